package l1

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// stopClock stops l's clock goroutine so that a test moves the clock itself with advance.
func stopClock(l *L1) {
	close(l.clockStop)
	<-l.clockDone
	l.clockStop, l.clockDone = make(chan struct{}), make(chan struct{})
	close(l.clockDone)
}

func newStopped(t *testing.T, cfg Config) *L1 {
	t.Helper()
	cfg.Live = true
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 1 << 20
	}
	l, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(l.Close)
	stopClock(l)
	return l
}

// Under the clock model (the clock lags real time by at most a tick), a fresh lookup at clock
// c serves only if c+tick <= now+ttl.
func TestExpiryNeverPastTTL(t *testing.T) {
	for _, ttl := range []time.Duration{15 * time.Millisecond, 20 * time.Millisecond, 25 * time.Millisecond,
		99 * time.Millisecond, 100 * time.Millisecond, 101 * time.Millisecond, time.Second + 3*time.Millisecond} {
		for off := time.Duration(0); off < clockTick; off += time.Millisecond {
			l := newStopped(t, Config{})
			o := l.NewOwner("g")
			t0 := time.Now().UnixNano()
			l.base.Store(t0 - int64(off))
			l.advance(t0)
			l.Fill(1, l.Snapshot(1), o, "k", "v", 10, ttl, ttl)
			t1 := time.Now().UnixNano()
			l.Wait()
			for c := t0; c < t1+int64(ttl)+int64(clockTick); c += int64(time.Millisecond / 4) {
				l.advance(c)
				if _, ok := l.Get(1, o, "k"); ok {
					require.LessOrEqual(t, c+int64(clockTick), t1+int64(ttl), "ttl %v off %v: served at clock %v past expiry", ttl, off, time.Duration(c-t0))
				}
			}
			l.Close()
		}
	}
}

// Fail-safe: GetStale must not serve once the clock itself reads past now+ttl+MaxStale.
func TestGetStaleBeyondMaxStale(t *testing.T) {
	const maxStale = 5 * time.Millisecond
	l := newStopped(t, Config{MaxStale: maxStale})
	o := l.NewOwner("g")
	t0 := time.Now().UnixNano()
	l.base.Store(t0)
	l.advance(t0)
	const ttl = time.Second
	l.Fill(1, l.Snapshot(1), o, "k", "v", 10, ttl, ttl)
	t1 := time.Now().UnixNano() // the L2 entry expires at most at t1+ttl
	l.Wait()
	_, ok := l.GetStale(1, o, "k")
	require.True(t, ok)
	c := t1 + int64(ttl) + int64(maxStale) // the clock, which lags real time, reads past the bound
	l.advance(c)
	_, ok = l.GetStale(1, o, "k")
	require.False(t, ok, "served stale %v past expiry, beyond MaxStale %v (freshUntil %d, ticks %d, maxStale ticks %d)",
		time.Duration(c-t1-int64(ttl)), maxStale, mustEntry(t, l, 1).freshUntil, l.ticks.Load(), l.maxStale)
}

func mustEntry(t *testing.T, l *L1, h uint64) *entry {
	e, ok := l.store.Get(h)
	require.True(t, ok)
	return e
}

// Huge TTLs and caps do not overflow into immediate expiry or wrap.
func TestHugeTTL(t *testing.T) {
	const century = 100 * 365 * 24 * time.Hour
	for _, cfg := range []Config{{}, {TTLCap: century}, {TTLCap: 10 * 365 * 24 * time.Hour}, {EagerRefresh: 0.5}, {MaxStale: century}} {
		l := newStopped(t, cfg)
		o := l.NewOwner("g")
		l.Fill(1, l.Snapshot(1), o, "k", "v", 10, century, century)
		l.Wait()
		v, ok := l.Get(1, o, "k")
		require.True(t, ok, "%+v", cfg)
		require.Equal(t, "v", v)
		now := time.Now().UnixNano()
		l.advance(now + int64(200*24*time.Hour))
		_, ok = l.Get(1, o, "k")
		require.True(t, ok, "200 days on, %+v", cfg)
		l.advance(now + int64(300*24*time.Hour)) // rebase
		_, ok = l.Get(1, o, "k")
		require.False(t, ok, "after a rebase, %+v", cfg)
		_, ok = l.GetStale(1, o, "k")
		require.False(t, ok, "after a rebase, stale, %+v", cfg)
		l.Close()
	}
}

// The eager wrapper is taken off on every path, and values are never double-wrapped.
func TestEagerUnwrap(t *testing.T) {
	l := newStopped(t, Config{EagerRefresh: 0.5, MaxStale: time.Hour})
	o := l.NewOwner("g")
	l.Fill(1, l.Snapshot(1), o, "k", "v", 10, time.Second, time.Second)
	l.Wait()
	v, ok := l.Get(1, o, "k")
	require.True(t, ok)
	require.Equal(t, "v", v)
	v, due, ok := l.GetRefresh(1, o, "k")
	require.True(t, ok)
	require.False(t, due)
	require.Equal(t, "v", v)
	v, ok = l.GetStale(1, o, "k")
	require.True(t, ok)
	require.Equal(t, "v", v)
	for range 200 { // through the front
		v, ok = l.Get(1, o, "k")
		require.True(t, ok)
		require.Equal(t, "v", v)
	}
	l.advance(time.Now().UnixNano() + int64(600*time.Millisecond))
	v, due, ok = l.GetRefresh(1, o, "k")
	require.True(t, ok)
	require.True(t, due)
	require.Equal(t, "v", v)
	l.advance(time.Now().UnixNano() + int64(2*time.Second))
	v, ok = l.GetStale(1, o, "k")
	require.True(t, ok)
	require.Equal(t, "v", v)
}

// Keys and owners sharing one h.
func TestSameHash(t *testing.T) {
	l := newStopped(t, Config{MaxStale: time.Hour})
	a, b := l.NewOwner("a"), l.NewOwner("b")
	const h = 9
	l.Fill(h, l.Snapshot(h), a, "k", "a/k", 10, time.Minute, time.Minute)
	l.Wait()
	for range 300 {
		v, ok := l.Get(h, a, "k")
		require.True(t, ok)
		require.Equal(t, "a/k", v)
		_, ok = l.Get(h, b, "k")
		require.False(t, ok)
		_, ok = l.Get(h, a, "j")
		require.False(t, ok)
		_, ok = l.GetStale(h, b, "k")
		require.False(t, ok)
	}
	l.Fill(h, l.Snapshot(h), b, "k", "b/k", 10, time.Minute, time.Minute)
	l.Wait()
	_, ok := l.Get(h, a, "k")
	require.False(t, ok)
	_, ok = l.GetStale(h, a, "k")
	require.False(t, ok)
	v, ok := l.Get(h, b, "k")
	require.True(t, ok)
	require.Equal(t, "b/k", v)
}

// A model of Redis per key: a write sets the version and invalidates; a read fills under a
// snapshot. A lookup that starts after an invalidation returned must never see an older
// version, nor another key's or owner's value. Keys share hashes, the L1 is small
// (evictions), and flushes and rebases come along.
func TestStressCoherence(t *testing.T) {
	l, err := New(Config{MaxBytes: 48 << 10, Live: true, MaxStale: time.Hour, EagerRefresh: 0.5})
	require.NoError(t, err)
	t.Cleanup(l.Close)
	owners := []*Owner{l.NewOwner("a"), l.NewOwner("b")}
	const nkeys = 64
	type kstate struct {
		h    uint64
		auth atomic.Int64 // the version in "Redis"
		done atomic.Int64 // the version whose invalidation has returned
	}
	keys := make([]*kstate, 0, nkeys*len(owners))
	for i := range nkeys {
		for range owners {
			keys = append(keys, &kstate{h: uint64(i % 8)}) // 8 keys x 2 owners per hash
		}
	}
	name := func(i int) (*Owner, string) { return owners[i%len(owners)], fmt.Sprintf("k%d", i/len(owners)) }
	type val struct {
		key int
		ver int64
	}
	deadline := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	var bad atomic.Value
	fail := func(f string, a ...any) { bad.CompareAndSwap(nil, fmt.Sprintf(f, a...)) }
	for w := range 2 { // writers
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; time.Now().Before(deadline); i = (i + 2) % len(keys) {
				k := keys[i]
				v := k.auth.Add(1)
				l.Invalidate(k.h)
				for {
					d := k.done.Load()
					if d >= v || k.done.CompareAndSwap(d, v) {
						break
					}
				}
			}
		}()
	}
	for f := range 2 { // fillers
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := f; time.Now().Before(deadline); i = (i*7 + 3) % len(keys) {
				k := keys[i]
				o, key := name(i)
				s := l.Snapshot(k.h)
				v := k.auth.Load()
				l.Fill(k.h, s, o, key, val{i, v}, 100, time.Minute, time.Minute)
			}
		}()
	}
	for r := range 4 { // readers
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := r; time.Now().Before(deadline); i = (i*5 + 1) % len(keys) {
				k := keys[i]
				o, key := name(i)
				d := k.done.Load()
				got, ok := l.Get(k.h, o, key)
				if ok {
					gv := got.(val)
					if gv.key != i {
						fail("key %d served key %d's value", i, gv.key)
					}
					if gv.ver < d {
						fail("key %d served version %d after the invalidation of version %d returned", i, gv.ver, d)
					}
				}
				if got, ok := l.GetStale(k.h, o, key); ok {
					gv := got.(val)
					if gv.key != i {
						fail("stale: key %d served key %d's value", i, gv.key)
					}
					if gv.ver < d {
						fail("stale: key %d served version %d after the invalidation of version %d returned", i, gv.ver, d)
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // flushes
		defer wg.Done()
		for time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
			l.Flush()
		}
	}()
	wg.Wait()
	if s := bad.Load(); s != nil {
		t.Fatal(s)
	}
}

// After a rebase returns, nothing filled before it is served, even with lookups and fills
// running through it.
func TestRebaseConcurrent(t *testing.T) {
	for round := range 20 {
		l := newStopped(t, Config{MaxStale: time.Hour})
		o := l.NewOwner("g")
		for h := range uint64(64) {
			l.Fill(h, l.Snapshot(h), o, "k", int64(0), 10, time.Minute, time.Minute)
		}
		l.Wait()
		var after atomic.Bool
		var stop atomic.Bool
		var lookups atomic.Int64
		var wg sync.WaitGroup
		var bad atomic.Value
		for g := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := uint64(g); !stop.Load(); i = (i + 3) % 64 {
					lookups.Add(1)
					a := after.Load()
					if v, ok := l.Get(i, o, "k"); ok && a && v.(int64) == 0 {
						bad.CompareAndSwap(nil, "a pre-rebase entry served after the rebase")
					}
					if v, ok := l.GetStale(i, o, "k"); ok && a && v.(int64) == 0 {
						bad.CompareAndSwap(nil, "a pre-rebase entry served stale after the rebase")
					}
					if g == 0 {
						l.Fill(i, l.Snapshot(i), o, "k", int64(1), 10, time.Minute, time.Minute)
					}
				}
			}()
		}
		// The readers and the filler are running; the rebase lands among them.
		require.Eventually(t, func() bool { return lookups.Load() >= 1000 }, 5*time.Second, time.Millisecond)
		now := time.Now().UnixNano()
		l.clockMu.Lock()
		l.base.Store(now - int64(rebaseTicks)*int64(clockTick))
		l.clockMu.Unlock()
		l.advance(now)
		after.Store(true)
		since := lookups.Load()
		require.Eventually(t, func() bool { return lookups.Load() >= since+3000 }, 5*time.Second, time.Millisecond)
		stop.Store(true)
		wg.Wait()
		if s := bad.Load(); s != nil {
			t.Fatalf("round %d: %v", round, s)
		}
		l.Close()
	}
}
