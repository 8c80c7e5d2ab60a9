package l1

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Each owner counts its own lookups, and the L1's Stats are their sums.
func TestOwnerStats(t *testing.T) {
	l, err := New(Config{MaxBytes: 1 << 20, Live: true, ExactHits: true})
	require.NoError(t, err)
	t.Cleanup(l.Close)
	a, b := l.NewOwner("a"), l.NewOwner("b")
	const ha, hb = 1, 2
	l.Fill(ha, l.Snapshot(ha), a, "k", "A", 10, time.Minute, time.Minute)
	l.Wait()
	for range 200 { // enough to promote the entry to the front: both paths count
		_, ok := l.Get(ha, a, "k")
		require.True(t, ok)
	}
	for range 3 {
		_, ok := l.Get(hb, b, "k")
		require.False(t, ok)
	}
	_, ok := l.Get(ha, b, "k") // a's entry, b's lookup: b's miss
	require.False(t, ok)

	hits, misses := a.Stats()
	require.Equal(t, [2]uint64{200, 0}, [2]uint64{hits, misses}, "a")
	hits, misses = b.Stats()
	require.Equal(t, [2]uint64{0, 4}, [2]uint64{hits, misses}, "b")
	hits, misses = l.Stats()
	require.Equal(t, [2]uint64{200, 4}, [2]uint64{hits, misses}, "the L1's: the sums")
}
