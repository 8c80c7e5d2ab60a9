package l1

import (
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// Two keys in one stripe: invalidating one leaves the other served (once it has been
// served: a confirmed entry is only ever made unservable by its own key).
func TestInvalidationIsExact(t *testing.T) {
	l := newTestL1(t, 1<<20)
	o := l.NewOwner("g")
	const a, b = 7, 7 + numStripes // same stripe, different keys
	l.Fill(a, l.Snapshot(a), o, "a", "A", 10, time.Minute, time.Minute)
	l.Fill(b, l.Snapshot(b), o, "b", "B", 10, time.Minute, time.Minute)
	l.Wait()
	_, ok := l.Get(a, o, "a")
	require.True(t, ok)
	_, ok = l.Get(b, o, "b")
	require.True(t, ok)

	l.Invalidate(a)
	_, ok = l.Get(a, o, "a")
	require.False(t, ok, "the invalidated key")
	_, ok = l.Get(b, o, "b")
	require.True(t, ok, "another key of the same stripe is still served")
}

// A fill whose read raced an invalidation of its key is never served, even when the
// invalidation came before the entry was in ristretto (so it could not mark it).
func TestFillRacingAnInvalidationIsNeverServed(t *testing.T) {
	l := newTestL1(t, 1<<20)
	o := l.NewOwner("g")
	const h = 42
	s := l.Snapshot(h) // the read of the old value starts
	l.Invalidate(h)    // a write lands and is heard: nothing in L1 to mark
	// The fill of the old value: Fill itself sees the stripe moved and drops it.
	l.Fill(h, s, o, "k", "old", 10, time.Minute, time.Minute)
	l.Wait()
	_, ok := l.Get(h, o, "k")
	require.False(t, ok)

	// The same race when the invalidation lands between Fill's check and ristretto applying
	// the entry: the first lookup finds the stripe moved.
	s = l.Snapshot(h)
	e := &entry{tag: l.tag(o, "k"), epoch: s.epoch, freshUntil: l.ticks.Load() + 6000}
	e.val.set("old")
	e.gs.Store(s.gen<<genShift | smallBit) // state: fresh (0)
	l.Invalidate(h)
	require.True(t, l.store.Set(h, e, 100))
	l.Wait()
	_, ok = l.Get(h, o, "k")
	require.False(t, ok, "the entry's stripe moved after its snapshot")
	require.Equal(t, dead, e.state(), "and it stays dead")
}

// An invalidation of another key of the stripe, before an entry's first lookup, costs that
// entry (a false invalidation, confined to entries not yet served); after it, none.
func TestFalseInvalidationOnlyBeforeTheFirstLookup(t *testing.T) {
	l := newTestL1(t, 1<<20)
	o := l.NewOwner("g")
	const a, b = 9, 9 + numStripes
	l.Fill(a, l.Snapshot(a), o, "a", "A", 10, time.Minute, time.Minute)
	l.Wait()
	l.Invalidate(b)
	_, ok := l.Get(a, o, "a")
	require.False(t, ok, "not yet confirmed when its stripe moved")
}

// When the clock reaches rebaseTicks it starts again from now, and what was filled before
// is served no more, not even by GetStale: its expiry counted from the old base.
func TestClockRebase(t *testing.T) {
	l, err := New(Config{MaxBytes: 1 << 20, Live: true, MaxStale: time.Hour})
	require.NoError(t, err)
	t.Cleanup(l.Close)
	o := l.NewOwner("g")
	const h = 5
	l.Fill(h, l.Snapshot(h), o, "k", "old", 10, time.Minute, time.Minute)
	l.Wait()
	_, ok := l.Get(h, o, "k")
	require.True(t, ok)

	now := time.Now().UnixNano()
	l.base.Store(now - int64(rebaseTicks)*int64(clockTick)) // the clock has run 2^31 ticks
	l.advance(now)
	require.Zero(t, l.ticks.Load(), "the clock starts again")
	_, ok = l.Get(h, o, "k")
	require.False(t, ok, "an entry of the old base")
	_, ok = l.GetStale(h, o, "k")
	require.False(t, ok, "an entry of the old base, fail-safe")

	l.Fill(h, l.Snapshot(h), o, "k", "new", 10, time.Minute, time.Minute)
	l.Wait()
	v, ok := l.Get(h, o, "k")
	require.True(t, ok)
	require.Equal(t, "new", v)
	l.advance(now + int64(time.Minute)) // the entry's minute, counted from the new base
	_, ok = l.Get(h, o, "k")
	require.False(t, ok, "expired on the new clock")
	v, ok = l.GetStale(h, o, "k")
	require.True(t, ok, "and within MaxStale")
	require.Equal(t, "new", v)
}

// The L1 keeps no reference to the key it is given: a key cut from a large string does not
// keep that string alive.
func TestFillKeepsNoKey(t *testing.T) {
	l := newTestL1(t, 1<<20)
	o := l.NewOwner("g")
	big := strings.Repeat("x", 1<<20)
	collected := make(chan struct{})
	runtime.AddCleanup(unsafe.StringData(big), func(ch chan struct{}) { close(ch) }, collected)
	key := big[:8]
	l.Fill(1, l.Snapshot(1), o, key, "v", 10, time.Minute, time.Minute)
	l.Wait()
	_, ok := l.Get(1, o, strings.Repeat("x", 8))
	require.True(t, ok)
	big, key = "", ""
	require.Eventually(t, func() bool {
		runtime.GC()
		select {
		case <-collected:
			return true
		default:
			return false
		}
	}, 5*time.Second, 10*time.Millisecond, "the key's string was kept")
}

// Renew, for a write this instance keeps: the written value is served; the value of a read
// made before the write (whose fill may land after) never is; and nothing is kept if an
// invalidation of the stripe came between the write's snapshot and Renew.
func TestRenew(t *testing.T) {
	l := newTestL1(t, 1<<20)
	o := l.NewOwner("g")
	const h = 77
	l.Fill(h, l.Snapshot(h), o, "k", "v0", 10, time.Minute, time.Minute)
	l.Wait()
	_, ok := l.Get(h, o, "k")
	require.True(t, ok)

	read := l.Snapshot(h)  // a read of v0 starts
	write := l.Snapshot(h) // the write of v1 starts, and lands
	renewed, ok := l.Renew(h, write)
	require.True(t, ok)
	_, ok = l.Get(h, o, "k")
	require.False(t, ok, "v0 is not served once v1 is written")
	l.Fill(h, renewed, o, "k", "v1", 10, time.Minute, time.Minute)
	l.Wait()
	v, ok := l.Get(h, o, "k")
	require.True(t, ok)
	require.Equal(t, "v1", v)
	l.Fill(h, read, o, "k", "v0", 10, time.Minute, time.Minute) // the read's fill comes last
	l.Wait()
	v, ok = l.Get(h, o, "k")
	require.True(t, !ok || v == "v1", "the read made before the write filled %v", v)

	write = l.Snapshot(h)
	l.Invalidate(h + numStripes) // another key of the stripe: heard between the write's snapshot and Renew
	_, ok = l.Renew(h, write)
	require.False(t, ok)
	write = l.Snapshot(h)
	l.Flush()
	_, ok = l.Renew(h, write)
	require.False(t, ok, "after a flush")
}

// RenewMany bumps a stripe once for all the keys of a batch in it: every key is kept. A key
// whose stripe moved since its snapshot is not, nor the others of its stripe.
func TestRenewManySharesStripes(t *testing.T) {
	l := newTestL1(t, 1<<20)
	const a, b, c, d = 5, 5 + numStripes, 5 + 2*numStripes, 6 // a, b, c share a stripe
	hs := []uint64{a, b, c, d}
	ss := []Snapshot{l.Snapshot(a), l.Snapshot(b), l.Snapshot(c), l.Snapshot(d)}
	_, ok := l.RenewMany(hs, ss)
	require.Equal(t, []bool{true, true, true, true}, ok)

	ss = []Snapshot{l.Snapshot(a), l.Snapshot(b), l.Snapshot(c), l.Snapshot(d)}
	l.Invalidate(c) // heard after the snapshots
	_, ok = l.RenewMany(hs, ss)
	require.Equal(t, []bool{false, false, false, true}, ok)
}

// A held key is not filled until it is released, and a fill from a read made while it was
// held is never served.
func TestHold(t *testing.T) {
	l := newTestL1(t, 1<<20)
	o := l.NewOwner("g")
	const h = 99
	l.Fill(h, l.Snapshot(h), o, "k", "v0", 10, time.Minute, time.Minute)
	l.Wait()
	l.Hold(h)
	_, ok := l.Get(h, o, "k")
	require.False(t, ok, "held: the value before the write is not served")
	during := l.Snapshot(h) // a read made while held
	l.Fill(h, during, o, "k", "v0", 10, time.Minute, time.Minute)
	l.Wait()
	_, ok = l.Get(h, o, "k")
	require.False(t, ok, "held: nothing is filled")
	l.Release(h)
	l.Fill(h, during, o, "k", "v0", 10, time.Minute, time.Minute)
	l.Wait()
	_, ok = l.Get(h, o, "k")
	require.False(t, ok, "a read made while held is not served after the release")
	l.Fill(h, l.Snapshot(h), o, "k", "v1", 10, time.Minute, time.Minute)
	l.Wait()
	v, ok := l.Get(h, o, "k")
	require.True(t, ok)
	require.Equal(t, "v1", v)
}
