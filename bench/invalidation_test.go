package bench

import (
	"context"
	"io"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// BenchmarkDataInvalidation measures coherence across instances: instance B serves a key
// from its L1; instance A writes a new value; the time from A's Set returning until B's Get
// stops returning the old value is one sample. p50-ns and p99-ns are over the run's samples;
// ns/op is a whole cycle (re-warming B's L1 + the write + the wait) and says little. A sample
// ends when B's Get returns the new value, so it includes the Redis GET that B makes once its
// L1 entry is gone.
//
// Between two reads the poller waits for a byte echoed over loopback TCP (pacer), as a real
// instance waits for its next request. It does not spin on runtime.Gosched: a goroutine that
// always finds itself runnable again keeps its P from ever checking Go's network poller,
// where B's invalidation waits; on a 2-core machine the runtime then learns of it only from
// sysmon (every 10 ms at worst), and a spinning poller measures its own starvation of B
// (p99 of 2–6 ms for bus-only and for rueidis's DoCache alike, 12 ms with GOMAXPROCS=1).
//
// tiercache runs in both invalidation modes: Auto (Redis server-assisted tracking, which
// redis-server 6+ grants) and BusOnly (pub/sub). rueidis-DoCache is rueidis's own client-side
// cache (tracking, OPTIN) for comparison. go-redis/cache is absent: it does not propagate
// invalidations, B serves the old value until its local TTL ends.
func BenchmarkDataInvalidation(b *testing.B) {
	s := redistest.Start(b)
	for _, mode := range []tiered.InvalidationMode{tiered.Auto, tiered.BusOnly} {
		b.Run("tiercache-"+mode.String(), func(b *testing.B) {
			opt := func(o *tiered.Options) { o.Invalidation = mode }
			ca, cb := newTiered(b, s, opt), newTiered(b, s, opt)
			ga := tiered.NewGroup[Article](ca, "data:inv", longTTL)
			gb := tiered.NewGroup[Article](cb, "data:inv", longTTL)
			ctx := context.Background()
			version := func(ctx context.Context) (int64, bool, error) {
				before := cb.Stats().L1Hits
				a, err := gb.Get(ctx, "k")
				return a.Likes, err == nil && cb.Stats().L1Hits > before, err
			}
			write := func(ctx context.Context, v int64) error {
				a := sample
				a.Likes = v
				return ga.Set(ctx, "k", a)
			}
			if err := write(ctx, 0); err != nil {
				b.Fatal(err)
			}
			measurePropagation(b, write, version)
		})
	}
	b.Run("rueidis-DoCache", func(b *testing.B) {
		ra, rb := newRueidisClient(b, s, false), newRueidisClient(b, s, true)
		const key = "ru:inv"
		version := func(ctx context.Context) (int64, bool, error) {
			res := rb.DoCache(ctx, rb.B().Get().Key(key).Cache(), longTTL)
			str, err := res.ToString()
			if err != nil {
				return 0, false, err
			}
			v, err := strconv.ParseInt(str, 10, 64)
			return v, res.IsCacheHit(), err
		}
		write := func(ctx context.Context, v int64) error {
			return ra.Do(ctx, ra.B().Set().Key(key).Value(strconv.FormatInt(v, 10)).Build()).Error()
		}
		if err := write(context.Background(), 0); err != nil {
			b.Fatal(err)
		}
		measurePropagation(b, write, version)
	})
}

// measurePropagation runs the cycle of BenchmarkDataInvalidation b.N times. write stores
// version v through instance A; read returns the version instance B serves and whether B
// served it from its local tier.
func measurePropagation(b *testing.B, write func(context.Context, int64) error,
	read func(context.Context) (v int64, local bool, err error)) {
	ctx := context.Background()
	const patience = 5 * time.Second
	pace := newPacer(b)
	var samples []time.Duration
	var v int64
	for b.Loop() {
		// B serves version v from its local tier.
		deadline := time.Now().Add(patience)
		for {
			got, local, err := read(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if got == v && local {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("instance B never served version %d locally (serves %d)", v, got)
			}
			pace()
		}
		v++
		if err := write(ctx, v); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for {
			got, _, err := read(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if got == v {
				break
			}
			if time.Since(start) > patience {
				b.Fatalf("instance B still serves version %d %v after version %d was written", got, patience, v)
			}
			pace()
		}
		samples = append(samples, time.Since(start))
	}
	slices.Sort(samples)
	b.ReportMetric(float64(percentile(samples, 0.50).Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(percentile(samples, 0.99).Nanoseconds()), "p99-ns")
}

// newPacer returns a function that blocks for one round trip of a byte over a loopback TCP
// connection to an echo goroutine: a wait that goes through Go's network poller, as a
// server's wait for its next request does. The connection and the goroutine end with b.
func newPacer(b *testing.B) func() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	echoed := make(chan struct{})
	go func() {
		defer close(echoed)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.Copy(conn, conn)
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = conn.Close()
		_ = ln.Close()
		<-echoed
	})
	var buf [1]byte
	return func() {
		if _, err := conn.Write(buf[:]); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, buf[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// percentile returns the q-quantile of sorted samples (nearest rank).
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
