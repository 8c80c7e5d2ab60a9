package bus_test

import (
	"context"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synspirit/tiercache/bus"
	"github.com/synspirit/tiercache/internal/redistest"
)

// BenchmarkPublish measures Publish until Redis acknowledges. "serial" is the lone message
// (sent at once: no batching delay, one round trip); "parallel" shows group commit, with
// batches/op far below 1.
func BenchmarkPublish(b *testing.B) {
	s := redistest.Start(b)
	a := newBus(b, newClient(b, s, false), "inv", nil)
	newBus(b, newClient(b, s, false), "inv", nil) // a listener, as in production
	ctx := context.Background()

	b.Run("serial", func(b *testing.B) {
		m := bus.Message{Keys: []string{"synspirit:data:articles:list:1"}}
		before := a.Stats().Batches
		b.ReportAllocs()
		for b.Loop() {
			if err := a.Publish(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(a.Stats().Batches-before)/float64(b.N), "batches/op")
	})
	b.Run("parallel", func(b *testing.B) {
		var n atomic.Int64
		before := a.Stats().Batches
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m := bus.Message{Keys: []string{"synspirit:data:articles:list:" + strconv.FormatInt(n.Add(1), 10)}}
				if err := a.Publish(ctx, m); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(a.Stats().Batches-before)/float64(b.N), "batches/op")
	})
}

// BenchmarkOneWayLatency measures from Publish on instance A to OnMessage on instance B, one
// message at a time, and reports the p50 and p99 in microseconds.
func BenchmarkOneWayLatency(b *testing.B) {
	s := redistest.Start(b)
	got := make(chan time.Time, 1)
	a := newBus(b, newClient(b, s, false), "inv", nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	rb, err := bus.New(ctx, newClient(b, s, false), bus.Options{
		Channel:   "inv",
		OnMessage: func(bus.Message) { got <- time.Now() },
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rb.Close() })

	m := bus.Message{Keys: []string{"synspirit:data:articles:list:1"}}
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		go func() { _ = a.Publish(context.Background(), m) }()
		lat = append(lat, (<-got).Sub(start))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
