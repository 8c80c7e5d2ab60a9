package l1

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/stretchr/testify/require"
)

// A value keeps its dynamic type and contents through an entry, whatever its kind, and is
// gone once cleared.
func TestValueRoundTrip(t *testing.T) {
	type big struct {
		a [40]int
		s string
	}
	var nilPtr *big
	var nilMap map[string]int
	n := 7
	for _, x := range []any{
		nil, 0, 42, 1 << 40, "", "text", 3.5, true, struct{}{}, [0]int{},
		big{a: [40]int{39: 1}, s: "b"}, &big{s: "p"}, nilPtr, nilMap, map[string]int{"a": 1}, []byte("bytes"),
		&n, error(nil), any(nilPtr),
	} {
		var v value
		v.set(x)
		got, ok := v.load()
		require.True(t, ok, "%#v", x)
		require.Equal(t, x, got)
		v.clear()
		_, ok = v.load()
		require.False(t, ok, "%#v: cleared", x)
	}
	f := func() int { return n }
	var v value
	v.set(f)
	got, ok := v.load()
	require.True(t, ok)
	require.Equal(t, 7, got.(func() int)())
}

// Entries come in slabs, and an entry that leaves ristretto (evicted, rejected or replaced)
// releases its value even while other entries of its slab live on: the values held alive are
// about those the L1 has room for, not those it ever held.
func TestGoneEntriesReleaseTheirValues(t *testing.T) {
	const keep = 40
	l := newTestL1(t, keep*(100+EntryOverhead))
	o := l.NewOwner("g")
	const fills = 4000
	type val struct{ k int }
	refs := make([]weak.Pointer[val], 0, 2*fills)
	for i := range fills {
		h := uint64(i % (fills / 2)) // half the fills replace an earlier entry of their key
		v := &val{k: i}
		refs = append(refs, weak.Make(v))
		l.Fill(h, l.Snapshot(h), o, strconv.Itoa(int(h)), v, 100, time.Minute, time.Minute)
		if i%64 == 0 {
			l.Wait()
		}
	}
	l.Wait()
	held := 0
	for h := range uint64(fills / 2) {
		if _, ok := l.Get(h, o, strconv.Itoa(int(h))); ok {
			held++
		}
	}
	require.NotZero(t, held, "the L1 holds some of them")
	runtime.GC()
	runtime.GC()
	alive := 0
	for _, r := range refs {
		if r.Value() != nil {
			alive++
		}
	}
	// What ristretto holds (its budget: keep entries), and the odd value in the front: never
	// the siblings of the slabs those entries are in (without clearing: 128 of 4,000 here).
	require.LessOrEqual(t, alive, keep+keep/2, "values alive after %d fills into room for %d (%d served)", fills, keep, held)
	runtime.KeepAlive(l)
}

// Lookups racing evictions never see a torn or foreign value: each is its own key's, or a
// miss. (Run with -race: the value's words are read and cleared with atomics.)
func TestLookupsRacingEvictions(t *testing.T) {
	l := newTestL1(t, 64*(16+EntryOverhead))
	o := l.NewOwner("g")
	const keys = 512
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := w; !stop.Load(); i++ {
				h := uint64(i % keys)
				l.Fill(h, l.Snapshot(h), o, strconv.Itoa(int(h)), strconv.Itoa(int(h)), 16, time.Minute, time.Minute)
			}
		})
	}
	var served atomic.Int64
	for range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				h := uint64(i * 7 % keys)
				if v, ok := l.Get(h, o, strconv.Itoa(int(h))); ok {
					if v != strconv.Itoa(int(h)) {
						t.Errorf("key %d served %#v", h, v)
						return
					}
					served.Add(1)
				}
			}
		})
	}
	require.Eventually(t, func() bool { return served.Load() > 20_000 }, 10*time.Second, time.Millisecond)
	stop.Store(true)
	wg.Wait()
}
