package tiered

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// The L1 tier: ristretto, plus the generation guard that makes it coherent.
//
// ristretto applies sets and deletes through buffers, in an order of its own: after Set(k, v)
// then Del(k), v can come back for a moment, and of two quick Sets of a new key the first can
// win. So the L1 is never trusted to hold the right value; it is trusted only to hold values
// tagged with the generations they were read under. Every entry records the generation of its
// key's stripe and the cache's epoch, both read before the Redis read or write that produced
// the value, and a lookup accepts an entry only if both are unchanged. An invalidation of a key
// bumps its stripe; a flush bumps the epoch (and empties the front, 4096 atomic loads).
// Neither touches ristretto, so both are safe on rueidis's reader goroutine, and a racing fill
// can never be served whatever order ristretto applies it in.

const (
	stripeBits = 12
	numStripes = 1 << stripeBits // 4096 counters, 32 KiB
	stripeMask = numStripes - 1

	numShards = 64 // stats/guard shards

	// The front: one slot per 64-bit key modulo frontSlots, holding an entry that was found
	// in ristretto, so that a hot key is read with one atomic load rather than through
	// ristretto's shard lock (an RWMutex whose reader count every core writes). Only entries
	// of at most frontMaxCost bytes go there, and ristretto's OnExit (eviction, replacement,
	// deletion) empties their slot, so the front holds a subset of ristretto's entries, but
	// for a promotion that races with an eviction (bounded: frontSlots small entries).
	frontSlots   = 4096
	frontMask    = frontSlots - 1
	frontMaxCost = 4 << 10
	// Only proven-hot keys go to the front, and their front hits are sampled into
	// ristretto's admission and eviction policy (TinyLFU), which counts a key's heat by its
	// Gets: a ristretto hit promotes its entry one time in frontPromote (a key read a few
	// times rarely gets there, and is counted in full), and one front hit in frontSample
	// also reads ristretto. A key in the front is hot enough that TinyLFU's 4-bit counters
	// stay saturated with a fraction of its hits.
	frontPromote = 64
	frontSample  = 8

	// clockTick is the resolution of the L1's clock. Expiry is checked against a clock read
	// from an atomic that one goroutine advances, not time.Now: a clock read was more than
	// half the cost of a hit when ristretto's TTL did it. Entries are stored with their
	// expiry moved a tick earlier, so a lagging clock never serves one past its L2 expiry.
	clockTick = 10 * time.Millisecond

	// entryOverhead approximates the bytes an L1 entry costs beyond its encoded value.
	entryOverhead = 96
)

type l1Entry struct {
	group *groupCore // which group filled it: also keeps a value of one type from another
	key   string     // the group key, checked on every hit (the L1 is keyed by a 64-bit hash)
	h     uint64     // the L1 key: the hash of the full Redis key
	gen   uint64
	epoch uint64
	small bool // cost at most frontMaxCost: may be served from the front
	value any
	// freshUntil is when the entry stops being served, on the L1's coarse clock: never later
	// than its L2 entry's expiry. With fail-safe it can still be served as a last resort
	// until freshUntil + FailSafeMaxStale.
	freshUntil int64 // unix nanoseconds
	// refreshAt is set only with eager refresh: past it, a GetOrLoad hit starts a
	// background refresh.
	refreshAt int64 // unix nanoseconds
}

// snapshot is a key's stripe generation and the epoch, taken before a Redis read or write.
type snapshot struct{ gen, epoch uint64 }

// l1Shard holds hot-path counters, padded to its own cache line. A lookup picks its shard at
// random (math/rand/v2 is per-thread: no lock, a few nanoseconds), not by key hash, so that
// cores reading one hot key do not all write to one cache line; totals are sums over shards. lookups and done also
// let Close wait for lookups in flight before it closes ristretto (which panics on a send to
// its closed buffers otherwise).
type l1Shard struct {
	lookups atomic.Uint64 // lookups started
	done    atomic.Uint64 // lookups finished
	misses  atomic.Uint64
	_       [40]byte
}

type l1 struct {
	store    *ristretto.Cache[uint64, *l1Entry] // nil when L1 is disabled
	ttlCap   time.Duration                      // set once by New, before any fill
	maxStale time.Duration                      // fail-safe bound; set once by New
	eager    float64                            // eager refresh threshold; set once by New

	epoch   atomic.Uint64
	stripes [numStripes]atomic.Uint64
	_       [64]byte                            // the front is read on every hit, the stripes written on every write
	front   [frontSlots]atomic.Pointer[l1Entry] // see getEntry
	_       [64]byte                            // keep the written shards off the lines of the read-mostly fields
	shards  [numShards]l1Shard
	_       [64]byte

	clock     atomic.Int64  // unix nanoseconds, advanced every clockTick
	clockStop chan struct{} // closed by close
	clockDone chan struct{} // closed when the clock goroutine has returned

	live   atomic.Bool // fills are trusted: invalidations are being heard
	closed atomic.Bool
	fillMu sync.RWMutex // read-held by fills, write-held by close
}

func newL1(maxBytes int64, disabled bool) (*l1, error) {
	l := &l1{}
	if disabled {
		return l, nil
	}
	// ristretto advises ~10 counters per expected entry; assume entries of ~512 bytes.
	counters := max(maxBytes/512*10, 10_000)
	store, err := ristretto.NewCache(&ristretto.Config[uint64, *l1Entry]{
		NumCounters:        counters,
		MaxCost:            maxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
		OnExit: func(e *l1Entry) { // evicted, replaced or deleted: out of the front too
			if e != nil {
				l.front[e.h&frontMask].CompareAndSwap(e, nil)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	l.store = store
	l.clock.Store(time.Now().UnixNano())
	l.clockStop, l.clockDone = make(chan struct{}), make(chan struct{})
	go l.runClock()
	return l, nil
}

func (l *l1) runClock() {
	defer close(l.clockDone)
	t := time.NewTicker(clockTick)
	defer t.Stop()
	for {
		select {
		case <-l.clockStop:
			return
		case now := <-t.C:
			l.clock.Store(now.UnixNano())
		}
	}
}

// now is the coarse clock: at most clockTick behind time.Now.
func (l *l1) now() int64 { return l.clock.Load() }

func (l *l1) snapshot(h uint64) snapshot {
	return snapshot{gen: l.stripes[h&stripeMask].Load(), epoch: l.epoch.Load()}
}

func (l *l1) current(h uint64, s snapshot) bool {
	return s.epoch == l.epoch.Load() && s.gen == l.stripes[h&stripeMask].Load()
}

// invalidate makes every L1 entry of the key with hash h unservable.
func (l *l1) invalidate(h uint64) { l.stripes[h&stripeMask].Add(1) }

// flush makes every L1 entry unservable (one atomic add), and empties the front, whose
// entries are unservable too but would be kept alive (4096 loads, a few µs).
func (l *l1) flush() {
	l.epoch.Add(1)
	for i := range l.front {
		if l.front[i].Load() != nil {
			l.front[i].Store(nil)
		}
	}
}

// get returns the value cached for (g, key) if it is still current. It is the hot path:
// no allocation, no lock of ours.
func (l *l1) get(h uint64, g *groupCore, key string) (any, bool) {
	e, ok := l.getEntry(h, g, key)
	if !ok {
		return nil, false
	}
	return e.value, true
}

func (l *l1) getEntry(h uint64, g *groupCore, key string) (*l1Entry, bool) {
	if l.store == nil {
		return nil, false
	}
	r := rand.Uint32()
	sh := &l.shards[r%numShards] // random: no contention on a hot key
	sh.lookups.Add(1)
	if !l.closed.Load() {
		// r's bits: 0-5 pick the shard, 6-8 the front sample, 9-14 the promotion.
		slot := &l.front[h&frontMask]
		if e := slot.Load(); e != nil && e.h == h && l.servable(e, h, g, key) {
			if (r>>6)%frontSample == 0 {
				l.store.Get(h) // feed ristretto's frequency sketch
			}
			sh.done.Add(1)
			return e, true
		}
		if e, ok := l.store.Get(h); ok && l.servable(e, h, g, key) {
			if e.small && (r>>9)%frontPromote == 0 && slot.Load() != e {
				slot.Store(e)
				// A newer fill may have replaced e in ristretto (and run OnExit for it)
				// between the Get and the Store: then e must not stay in the front.
				if cur, ok := l.store.Get(h); !ok || cur != e {
					slot.CompareAndSwap(e, nil)
				}
			}
			sh.done.Add(1)
			return e, true
		}
	}
	sh.misses.Add(1)
	sh.done.Add(1)
	return nil, false
}

// servable tells whether e, found under h, is (g, key)'s current entry: of this group and
// key, filled after the last flush and the last write to its stripe, and fresh.
func (l *l1) servable(e *l1Entry, h uint64, g *groupCore, key string) bool {
	return e.group == g && e.key == key && e.epoch == l.epoch.Load() &&
		e.gen == l.stripes[h&stripeMask].Load() && l.clock.Load() < e.freshUntil
}

// fill stores a value read or written under snapshot s, unless s is already stale. ttl is
// the L2 entry's remaining life; the L1 entry never outlives it.
func (l *l1) fill(h uint64, s snapshot, g *groupCore, key string, value any, cost int64, ttl time.Duration) {
	if l.store == nil || !l.live.Load() || !l.current(h, s) || ttl <= 0 {
		return
	}
	now := time.Now()
	e := &l1Entry{group: g, key: key, h: h, gen: s.gen, epoch: s.epoch, value: value, small: cost <= frontMaxCost}
	if l.eager > 0 {
		e.refreshAt = now.Add(ttl - time.Duration((1-l.eager)*float64(g.ttl))).UnixNano()
	}
	if l.ttlCap > 0 && l.ttlCap < ttl {
		ttl = l.ttlCap
	}
	if ttl -= clockTick; ttl <= 0 {
		return
	}
	e.freshUntil = now.Add(ttl).UnixNano()
	// No ristretto TTL: ristretto would read the clock on every Get. Expired entries stay
	// until the cost budget evicts them (rarely read, they go first), and are never served.
	l.fillMu.RLock()
	if !l.closed.Load() {
		l.store.Set(h, e, cost+int64(len(key))+entryOverhead)
	}
	l.fillMu.RUnlock()
}

// getStale is the fail-safe lookup: the last value of the key this instance held, even if
// it is no longer fresh or the L1 was flushed (Redis unreachable), provided no newer write to
// the key is known (its stripe is unchanged) and it is at most maxStale past its freshness.
func (l *l1) getStale(h uint64, g *groupCore, key string) (any, bool) {
	if l.store == nil || l.maxStale == 0 || l.closed.Load() {
		return nil, false
	}
	sh := &l.shards[rand.Uint32()%numShards] // random: no contention on a hot key
	sh.lookups.Add(1)
	defer sh.done.Add(1)
	e, ok := l.store.Get(h)
	if !ok || e.group != g || e.key != key || e.gen != l.stripes[h&stripeMask].Load() ||
		l.now() > e.freshUntil+int64(l.maxStale) {
		return nil, false
	}
	return e.value, true
}

func (l *l1) stats() (hits, misses uint64) {
	for i := range l.shards {
		sh := &l.shards[i]
		m := sh.misses.Load()
		d := sh.done.Load()
		misses += m
		if d > m { // a miss counted before its lookup finished
			hits += d - m
		}
	}
	return hits, misses
}

// close waits for lookups in flight and stops ristretto's goroutines.
func (l *l1) close() {
	if l.closed.Swap(true) || l.store == nil {
		return
	}
	for !l.quiet() {
		runtime.Gosched()
	}
	l.fillMu.Lock()
	l.store.Close()
	l.fillMu.Unlock()
	close(l.clockStop)
	<-l.clockDone
}

// quiet reports whether no lookup is in flight. Finished counts are read before started
// counts: a lookup counted as finished was counted as started too, so equality means none
// is between the two.
func (l *l1) quiet() bool {
	var done, started uint64
	for i := range l.shards {
		done += l.shards[i].done.Load()
	}
	for i := range l.shards {
		started += l.shards[i].lookups.Load()
	}
	return done == started
}
