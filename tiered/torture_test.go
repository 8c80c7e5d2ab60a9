package tiered_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

var tortureFor = flag.Duration("torture", 3*time.Second, "how long each coherence torture run lasts")

// writeLog records, per key, the library writes in the order they were made (writes to a
// key are serialised by its lock so that "newer" is well defined) and when each returned.
type writeLog struct {
	mu     [tortureKeys]sync.Mutex // one writer per key at a time
	logMu  sync.Mutex              // protects writes
	writes [tortureKeys][]logged
}

type logged struct {
	seq      int64
	returned time.Time
}

const tortureKeys = 16

// staleness returns how long after a newer write had returned a read that started at
// start saw seq, or 0 when the read was not stale.
func (w *writeLog) staleness(key int, seq int64, start time.Time) time.Duration {
	w.logMu.Lock()
	defer w.logMu.Unlock()
	for _, l := range w.writes[key] {
		if l.seq > seq && l.returned.Before(start) {
			return start.Sub(l.returned)
		}
	}
	return 0
}

// Values are "w<seq>" for logged library writes, "l<n>" for loader values and "f<n>" for
// the foreign writer's: only the first are measured.
func parseSeq(v string) (int64, bool) {
	if !strings.HasPrefix(v, "w") {
		return 0, false
	}
	n, err := strconv.ParseInt(v[1:], 10, 64)
	return n, err == nil
}

// TestCoherenceTorture runs 3 instances doing random reads, loads, writes, deletes and
// clears on a small key set, a plain client writing behind their back, and a kill of every
// client connection in the middle. After the writers stop and a quiescence period, every
// instance must read exactly what Redis holds, for every key.
func TestCoherenceTorture(t *testing.T) {
	for _, mode := range []tiered.InvalidationMode{tiered.Auto, tiered.BusOnly} {
		t.Run(mode.String(), func(t *testing.T) { torture(t, mode, killOnce) })
	}
}

// TestFaultBusOnlyPubSubKills runs the BusOnly torture with no fault, then with the bus's
// pub/sub connections killed every 200 ms: messages are lost at each kill, and L1 must be
// off until the bus is back. RELIABILITY.md compares the two staleness windows.
func TestFaultBusOnlyPubSubKills(t *testing.T) {
	t.Run("no-fault", func(t *testing.T) { torture(t, tiered.BusOnly, noFault) })
	t.Run("pubsub-kills", func(t *testing.T) { torture(t, tiered.BusOnly, pubsubEvery200ms) })
}

// Faults of a torture run.
const (
	killOnce         = iota // every client connection, once, halfway through
	noFault                 // none
	pubsubEvery200ms        // the pub/sub connections, every 200 ms
)

func torture(t *testing.T, mode tiered.InvalidationMode, fault int) {
	s := redistest.Start(t)
	// In BusOnly mode nothing reports the foreign writer's changes but expiry of L1
	// entries: the cap is set short, and the quiescence period is longer than it.
	const busOnlyCap = 200 * time.Millisecond
	quiescence := 100 * time.Millisecond
	setup := func(o *tiered.Options) {
		o.Invalidation = mode
		if mode == tiered.BusOnly {
			o.L1TTL = busOnlyCap
			quiescence = busOnlyCap + 100*time.Millisecond
		}
	}
	const instances = 3
	caches := make([]*tiered.Cache, instances)
	groups := make([]*tiered.Group[string], instances)
	for i := range caches {
		caches[i] = newCache(t, s, setup)
		groups[i] = tiered.NewGroup[string](caches[i], "torture", time.Minute)
	}
	ctx := context.Background()
	key := func(k int) string { return "k" + strconv.Itoa(k) }

	var (
		log                    writeLog
		seq, loads, foreign    atomic.Int64
		ops, reads, staleReads atomic.Int64
		windowsMu              sync.Mutex
		windows                []time.Duration
		clearMu                sync.RWMutex // Clear excludes logged writes: it "writes" every key
		stop                   = make(chan struct{})
		wg                     sync.WaitGroup
		errUnexpected          atomic.Value
	)
	fail := func(err error) { errUnexpected.CompareAndSwap(nil, err) }
	record := func(k int, v string, start time.Time) {
		reads.Add(1)
		if n, ok := parseSeq(v); ok {
			if d := log.staleness(k, n, start); d > 0 {
				staleReads.Add(1)
				windowsMu.Lock()
				windows = append(windows, d)
				windowsMu.Unlock()
			}
		}
	}
	worker := func(inst int, seed uint64) {
		defer wg.Done()
		r := rand.New(rand.NewPCG(seed, 42))
		g := groups[inst]
		for {
			select {
			case <-stop:
				return
			default:
			}
			ops.Add(1)
			k := r.IntN(tortureKeys)
			switch p := r.IntN(100); {
			case p < 55:
				start := time.Now()
				v, err := g.Get(ctx, key(k))
				if err == nil {
					record(k, v, start)
				} else if !errors.Is(err, tiered.ErrNotFound) && !errors.Is(err, tiered.ErrUnavailable) {
					fail(err)
				}
			case p < 75:
				start := time.Now()
				v, err := g.GetOrLoad(ctx, key(k), func(context.Context) (string, error) {
					return "l" + strconv.FormatInt(loads.Add(1), 10), nil
				})
				if err != nil {
					fail(err)
				} else {
					record(k, v, start)
				}
			case p < 92:
				clearMu.RLock()
				log.mu[k].Lock()
				n := seq.Add(1)
				if err := g.Set(ctx, key(k), "w"+strconv.FormatInt(n, 10)); err == nil {
					log.logMu.Lock()
					log.writes[k] = append(log.writes[k], logged{n, time.Now()})
					log.logMu.Unlock()
				}
				log.mu[k].Unlock()
				clearMu.RUnlock()
			case p < 99:
				_ = g.Delete(ctx, key(k))
			default:
				clearMu.Lock()
				_ = g.Clear(ctx)
				clearMu.Unlock()
			}
		}
	}
	for i := range instances {
		for w := range 4 {
			wg.Add(1)
			go worker(i, uint64(i*10+w))
		}
	}
	// The plain client: writes valid envelopes and deletes behind the library's back.
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(7, 7))
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			k := r.IntN(tortureKeys)
			rk, err := groups[0].RedisKey(ctx, key(k))
			if err != nil {
				continue
			}
			if r.IntN(3) == 0 {
				_ = s.Client().Do(ctx, s.Client().B().Del().Key(rk).Build()).Error()
				continue
			}
			p, _ := json.Marshal("f" + strconv.FormatInt(foreign.Add(1), 10))
			env := tiered.EnvelopeForTest(p, time.Now().Add(time.Minute).UnixMilli())
			_ = s.Client().Do(ctx, s.Client().B().Set().Key(rk).Value(string(env)).Ex(time.Minute).Build()).Error()
		}
	}()

	var killed int64
	switch fault {
	case killOnce:
		time.Sleep(*tortureFor / 2) // the run itself: this is the load, not synchronisation
		killed = s.KillClients("TYPE", "normal") + s.KillClients("TYPE", "pubsub")
		time.Sleep(*tortureFor / 2)
	case noFault:
		time.Sleep(*tortureFor)
	case pubsubEvery200ms:
		for end := time.Now().Add(*tortureFor); time.Now().Before(end); {
			time.Sleep(200 * time.Millisecond) // the fault's period
			killed += s.KillClients("TYPE", "pubsub")
		}
	}
	close(stop)
	wg.Wait()
	if err, _ := errUnexpected.Load().(error); err != nil {
		t.Fatalf("unexpected error during the run: %v", err)
	}

	time.Sleep(quiescence) // the bound under test: everything must have settled by then
	stale := 0
	for k := range tortureKeys {
		want, found := truth(t, s, groups[0], key(k))
		for i, g := range groups {
			got, err := g.Get(ctx, key(k))
			if found && (err != nil || got != want) || !found && !errors.Is(err, tiered.ErrNotFound) {
				stale++
				t.Errorf("instance %d, %s: got %q (%v), Redis holds %q (found %v)", i, key(k), got, err, want, found)
			}
		}
	}
	slices.Sort(windows)
	pct := func(p float64) time.Duration {
		if len(windows) == 0 {
			return 0
		}
		return windows[min(len(windows)-1, int(p*float64(len(windows))))]
	}
	var hits uint64
	for _, c := range caches {
		hits += c.Stats().L1Hits
	}
	t.Logf("%s: %d ops on %d instances (%d reads, %d L1 hits, %d logged writes, %d loads, %d foreign writes), %d connections killed mid-run",
		mode, ops.Load(), instances, reads.Load(), hits, seq.Load(), loads.Load(), foreign.Load(), killed)
	t.Logf("%s: stale reads during the run: %d; staleness window p50 %v, p99 %v, max %v; stale reads after %v quiescence: %d",
		mode, staleReads.Load(), pct(0.50), pct(0.99), pct(1), quiescence, stale)
	name := "torture-" + mode.String()
	switch fault {
	case noFault:
		name += "-no-fault"
	case pubsubEvery200ms:
		name += "-pubsub-kills"
	}
	reliability(t, name, map[string]any{"ops": ops.Load(), "instances": instances, "reads": reads.Load(),
		"logged_writes": seq.Load(), "loads": loads.Load(), "foreign_writes": foreign.Load(), "connections_killed": killed,
		"stale_during_run": staleReads.Load(), "window_p50_us": pct(0.50).Microseconds(), "window_p99_us": pct(0.99).Microseconds(),
		"window_max_us": pct(1).Microseconds(), "quiescence_ms": quiescence.Milliseconds(), "stale_after_quiescence": stale})
	if fault != noFault {
		require.Positive(t, killed)
	}
	require.Zero(t, stale)
}

// truth reads key straight from Redis, under the group's current generation.
func truth(t *testing.T, s *redistest.Server, g *tiered.Group[string], key string) (string, bool) {
	t.Helper()
	raw, err := s.Client().Do(context.Background(), s.Client().B().Get().Key(redisKey(t, g, key)).Build()).AsBytes()
	if rueidis.IsRedisNil(err) {
		return "", false
	}
	require.NoError(t, err)
	require.Greater(t, len(raw), 12, "not an envelope")
	var v string
	require.NoError(t, json.Unmarshal(raw[12:], &v), fmt.Sprintf("payload %q", raw[12:]))
	return v, true
}
