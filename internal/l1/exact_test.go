package l1

import (
	"testing"
	"time"

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
	e := &entry{owner: o, key: "k", h: h, gen: s.gen, epoch: s.epoch, value: "old", small: true,
		freshUntil: time.Now().Add(time.Minute).UnixNano()}
	l.Invalidate(h)
	require.True(t, l.store.Set(h, e, 100))
	l.Wait()
	_, ok = l.Get(h, o, "k")
	require.False(t, ok, "the entry's stripe moved after its snapshot")
	require.Equal(t, dead, e.state.Load(), "and it stays dead")
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
