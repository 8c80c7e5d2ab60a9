package l1

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fillAndPromote fills key under h and reads it until it is in the front (a ristretto hit
// promotes one time in frontPromote), or, for an entry too large for the front, 10000 times.
func fillAndPromote(t *testing.T, l *L1, g *Owner, h uint64, key string, cost int64) {
	t.Helper()
	l.Fill(h, l.Snapshot(h), g, key, key, cost, time.Minute, time.Minute)
	l.store.Wait()
	promote(t, l, g, h, key)
}

func promote(t *testing.T, l *L1, g *Owner, h uint64, key string) bool {
	t.Helper()
	for range 10000 {
		_, ok := l.Get(h, g, key)
		require.True(t, ok, "filled entry not found")
		if fi := l.front[h&frontMask].Load(); fi != nil && fi.h == h {
			return true
		}
	}
	return false
}

func newTestL1(t *testing.T, maxBytes int64) *L1 {
	t.Helper()
	l, err := New(Config{MaxBytes: maxBytes, Live: true})
	require.NoError(t, err)
	t.Cleanup(l.Close)
	return l
}

func TestFrontServesOnlyCurrentEntries(t *testing.T) {
	l := newTestL1(t, 1<<20)
	g := l.NewOwner("g")
	const h = 42
	fillAndPromote(t, l, g, h, "k", 100)
	require.NotNil(t, l.front[h&frontMask].Load(), "a small entry read from ristretto goes to the front")

	_, ok := l.Get(h, l.NewOwner("g"), "k")
	assert.False(t, ok, "another group's key under the same hash")
	_, ok = l.Get(h+frontSlots, g, "k")
	assert.False(t, ok, "another hash in the same slot")

	l.epoch.Add(1) // a flush, without emptying the front
	_, ok = l.Get(h, g, "k")
	assert.False(t, ok, "an entry filled before a flush is not served from the front")
	fillAndPromote(t, l, g, h, "k", 100)
	_, ok = l.Get(h, g, "other")
	assert.False(t, ok, "another key under the same hash")

	l.Invalidate(h)
	_, ok = l.Get(h, g, "k")
	assert.False(t, ok, "a write to the key's stripe makes the front entry unservable")

	fillAndPromote(t, l, g, h, "k", 100)
	l.Flush()
	_, ok = l.Get(h, g, "k")
	assert.False(t, ok, "a flush makes the front entry unservable")
	assert.Nil(t, l.front[h&frontMask].Load(), "and empties the front")
}

func TestFrontTakesSmallEntriesOnly(t *testing.T) {
	l := newTestL1(t, 1<<20)
	g := l.NewOwner("g")
	fillAndPromote(t, l, g, 7, "big", frontMaxCost+1)
	assert.Nil(t, l.front[7&frontMask].Load())
}

// The front keeps no entry that ristretto has let go: its memory stays within L1MaxBytes.
func TestFrontForgetsEvictedEntries(t *testing.T) {
	l := newTestL1(t, 64<<10) // room for a few dozen entries of ~1 KiB
	g := l.NewOwner("g")
	for i := range 2000 {
		h := uint64(i)
		key := strconv.Itoa(i)
		l.Fill(h, l.Snapshot(h), g, key, key, 1000, time.Minute, time.Minute)
		l.store.Wait()
		if _, ok := l.store.Get(h); ok { // promote it if ristretto kept it
			promote(t, l, g, h, key)
		}
	}
	l.store.Wait()
	held := 0
	for i := range l.front {
		fi := l.front[i].Load()
		if fi == nil {
			continue
		}
		held++
		got, ok := l.store.Get(fi.h)
		require.True(t, ok && got == fi.e, "the front holds the entry of %d, which ristretto has evicted", fi.h)
	}
	assert.Positive(t, held)
	assert.Less(t, held, 100, "the front holds no more than ristretto does")
}

// An entry that leaves ristretto while a lookup is promoting it is in neither the front nor
// ristretto when an invalidation of its key comes; the promotion then lands. The front must
// not serve it: its stripe moved since the lookup found it.
func TestFrontRefusesAPromotionThatRacedAnInvalidation(t *testing.T) {
	l := newTestL1(t, 1<<20)
	g := l.NewOwner("g")
	const h = 42
	l.Fill(h, l.Snapshot(h), g, "k", "old", 100, time.Minute, time.Minute)
	l.Wait()
	_, ok := l.Get(h, g, "k") // confirmed
	require.True(t, ok)

	gen := l.stripes[h&stripeMask].Load()
	e, ok := l.store.Get(h) // what a promoting lookup found
	require.True(t, ok)
	l.store.Del(h) // evicted before the lookup puts it in the front
	l.Wait()
	l.Invalidate(h)                                              // finds it nowhere
	l.front[h&frontMask].Store(&frontItem{e: e, h: h, gen: gen}) // the promotion lands
	_, ok = l.Get(h, g, "k")
	assert.False(t, ok, "served from the front after its key's invalidation")
}
