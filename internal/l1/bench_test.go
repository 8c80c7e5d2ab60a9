package l1

import (
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkFalseInvalidation measures how many held entries writes to other keys make
// unservable: 10,000 entries served once (confirmed), then 1,000 invalidations of other keys
// of the same L1 (one second of 1,000 writes/s), then every entry looked up again. Target: at
// most 0.1% of the entries. Before exact invalidation, each write cost 1/4096 of all
// entries: 22% here.
func BenchmarkFalseInvalidation(b *testing.B) {
	const held, writes = 10_000, 1_000
	var lost, total float64
	for range b.N {
		b.StopTimer()
		l, err := New(Config{MaxBytes: 64 << 20, Live: true})
		if err != nil {
			b.Fatal(err)
		}
		o := l.NewOwner("g")
		r := rand.New(rand.NewPCG(1, 2))
		keys := make([]uint64, held)
		for i := range keys {
			keys[i] = r.Uint64()
			l.Fill(keys[i], l.Snapshot(keys[i]), o, "k", i, 100, time.Hour, time.Hour)
		}
		l.Wait()
		for _, h := range keys {
			l.Get(h, o, "k")
		}
		b.StartTimer()
		for range writes {
			l.Invalidate(r.Uint64())
		}
		b.StopTimer()
		for _, h := range keys {
			if _, ok := l.Get(h, o, "k"); !ok {
				lost++
			}
		}
		total += held
		l.Close()
	}
	b.ReportMetric(lost/total, "false-invalidated/1000-writes")
}

// BenchmarkFill is one fill of a new key, as a batch's or a miss's: a serial loop, and bursts
// of 100 (a page) with a pause between them that lets ristretto's goroutine go idle.
func BenchmarkFill(b *testing.B) {
	l, err := New(Config{MaxBytes: 256 << 20, Live: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	o := l.NewOwner("g")
	var h uint64
	b.Run("loop", func(b *testing.B) {
		for b.Loop() {
			h++
			l.Fill(h, l.Snapshot(h), o, "k", h, 100, time.Hour, time.Hour)
		}
	})
	b.Run("bursts-of-100", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if i%100 == 0 {
				b.StopTimer()
				time.Sleep(200 * time.Microsecond)
				b.StartTimer()
			}
			h++
			l.Fill(h, l.Snapshot(h), o, "k", h, 100, time.Hour, time.Hour)
		}
	})
}
