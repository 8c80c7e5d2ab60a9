// Package l1 is tiercache's in-process tier: ristretto, behind the generation guard that
// makes it coherent. It alone decides what may be served: the owner, key, flush epoch,
// stripe generation and freshness of an entry are checked here and nowhere else.
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
//
// An entry is 32 bytes beside its value, the smallest the guard allows: the value, its
// expiry on a coarse clock, its epoch, its generation and state in one word, and a 32-bit tag
// of its owner and key. The key itself is not kept (nor does the L1 hold on to the caller's
// string): ristretto holds each entry under the caller's 64-bit hash of the key, and a lookup
// checks the tag, a hash the L1 makes of the owner and key with a secret of its own
// (internal/strhash). Two keys, or two owners' keys, are confused only if both seeded hashes
// collide: one chance in 2^96 for a pair, and at most one in 2^90 for any pair, even one built
// against the tag's hash (2^64 for the caller's hash times 2^26 for the tag's: see strhash).
// The tag covers the owner, not the group's generation: after a Clear, an entry of the old
// generation is told from the new one's entry of the same key by the caller's hash alone
// (which covers it), one chance in 2^64. (ristretto's own string keys are two 64-bit hashes,
// one of them unseeded.)
// Entries are allocated 8 at a time, and release their value when they leave ristretto: the
// garbage collector then visits one object per 8 entries rather than one entry alone among a
// read's garbage (slab.go).
package l1

import (
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/synspirit/tiercache/internal/strhash"
)

const (
	stripeBits = 12
	numStripes = 1 << stripeBits // 4096 counters, 16 KiB
	stripeMask = numStripes - 1

	numShards = 64 // shards of the Close guard (an Owner has its own for its lookup counters)

	// The front: one slot per 64-bit key modulo frontSlots, holding an entry that was found
	// in ristretto, so that a hot key is read with one atomic load rather than through
	// ristretto's shard lock (an RWMutex whose reader count every core writes). Only entries
	// of at most frontMaxCost bytes go there, and ristretto's OnEvict (and a fill that
	// replaces an entry) empties their slot, so the front holds a subset of ristretto's entries, but
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
	frontSample  = 32
	// hitSample: one front hit in hitSample is counted, as hitSample hits (Stats is
	// statistics, and an atomic add per hit on a line every core writes would cost more
	// than the hit). Config.ExactHits counts each.
	hitSample = 16

	// clockTick is the resolution of the L1's clock. Expiry is checked against a clock read
	// from an atomic that one goroutine advances, not time.Now: a clock read was more than
	// half the cost of a hit when ristretto's TTL did it. The clock counts ticks from a base
	// in 32 bits, as entries record their expiry; entries are stored with their expiry moved
	// a tick earlier, so a lagging clock never serves one past its L2 expiry.
	clockTick = 10 * time.Millisecond
	// rebaseTicks: when the clock reaches it (2^31 ticks, about 248 days after the base), the
	// base moves to now and every entry is flushed, so that 32-bit expiries never wrap. An
	// expiry beyond 2^32 ticks of the base is brought in to it.
	rebaseTicks = 1 << 31

	// Bounds of ristretto's admission counters (see New).
	minCounters = 10_000
	maxCounters = 8 << 20
)

// EntryOverhead is what a fill is charged beyond its value's encoded size against
// Config.MaxBytes: ristretto's item, map slot and admission record for it (~100 bytes), and
// the entry: 32 bytes in a slab of slabEntries, which lives as long as any of its entries, so
// that under heavy churn (a Zipf workload into a full L1) each held entry comes with ~180
// bytes of slabs, up to 256 at worst. With no churn (BenchmarkL1Size) the whole is ~140.
const EntryOverhead = 256

// Owner identifies whose entries these are: a group namespace of one cache. An entry is
// served only to lookups of its owner, so a value of one type never reaches a group of
// another. The owner holds its lookups' counters: a lookup writes its owner's counters
// rather than the L1's, so per-group counts cost the hot path nothing more, and the L1's
// totals are sums over its owners.
type Owner struct {
	name   string
	salt   uint64                  // mixed into its entries' tags
	shards [ownerShards]ownerShard // written by lookups; see shard
}

// ownerShards: fewer than the L1's shards, as every group has its own (1 KiB each).
const ownerShards = 16

// ownerShard is one of an owner's counter shards, padded to its own cache line.
type ownerShard struct {
	hits   atomic.Uint64 // in ristretto, and in the front sampled (see hitSample)
	misses atomic.Uint64
	_      [48]byte
}

// NewOwner returns a new owner whose counters count in l's Stats; name is for debugging
// only.
func (l *L1) NewOwner(name string) *Owner {
	o := &Owner{name: name, salt: rand.Uint64()}
	l.ownersMu.Lock()
	l.owners = append(l.owners, o)
	l.ownersMu.Unlock()
	return o
}

// Stats are the owner's lookup counters since NewOwner; hits in the front are sampled (see
// hitSample).
func (o *Owner) Stats() (hits, misses uint64) {
	for i := range o.shards {
		hits += o.shards[i].hits.Load()
		misses += o.shards[i].misses.Load()
	}
	return hits, misses
}

// entry is one cached value: 32 bytes beside the value, allocated in slabs (see slab.go). Its
// fields are written before it is stored (in ristretto or the front) and only read afterwards,
// but the state bits of gs and the value's clearing when it leaves ristretto.
type entry struct {
	// val is what the owner stored; with eager refresh, a *refreshing holding it.
	val value
	tag uint32 // the L1's hash of its owner and key (see L1.tag)
	// freshUntil is the tick (see clockTick) from which the entry is no longer served: never
	// later than its L2 entry's expiry. With fail-safe it can still be served as a last
	// resort until freshUntil + MaxStale.
	freshUntil uint32
	epoch      uint32 // the L1's epoch at the snapshot taken before the Redis read
	// gs holds the key's stripe generation at that snapshot (bits 3 and up: its low 29
	// bits), whether the entry is small (bit 2: cost at most frontMaxCost, so it may go to
	// the front) and its state (bits 0-1). The state is fresh until the entry's first lookup,
	// which confirms it (no invalidation of its stripe since its snapshot) or finds it dead;
	// an invalidation of its key marks it dead at any time. The state bits are written by
	// lookups and invalidations, with compare-and-swap; the others never change.
	gs atomic.Uint32
}

// Entry states, and gs's layout.
const (
	fresh     uint32 = iota // filled, not looked up yet
	confirmed               // no invalidation of its key since its snapshot: served until one comes
	dead                    // its key was invalidated (or may have been, before it was confirmed)

	stateMask = 3
	smallBit  = 4
	genShift  = 3
)

func (e *entry) state() uint32 { return e.gs.Load() & stateMask }
func (e *entry) small() bool   { return e.gs.Load()&smallBit != 0 }

// filledUnder reports whether e's snapshot had the stripe generation gen (in its low 29 bits:
// an entry is taken for another generation's only if its stripe moved exactly a multiple of
// 2^29 times between its snapshot and its first lookup).
func (e *entry) filledUnder(gen uint32) bool { return e.gs.Load()>>genShift == gen<<genShift>>genShift }

// kill marks e dead. The other bits of gs never change, so a plain store keeps them.
func (e *entry) kill() { e.gs.Store(e.gs.Load()&^stateMask | dead) }

// refreshing is an entry's value with eager refresh: the tick past which a lookup says a
// refresh is due. It is a value of its own so that entries without eager refresh do not pay
// for the field.
type refreshing struct {
	v  any
	at uint32
}

// frontItem is an entry in the front, with its key's hash and its stripe's generation when a
// lookup found it in ristretto. A front hit needs that generation unchanged: an invalidation
// of the key finds the entry in the front or in ristretto, but an entry that left ristretto
// just as a lookup was promoting it is in neither, and only the stripe tells. An invalidation
// of another key of the stripe sends the entry's hits back to ristretto until it is promoted
// again.
type frontItem struct {
	e   *entry
	h   uint64
	gen uint32
}

// Snapshot is a key's stripe generation and the epoch, taken before a Redis read or write.
// An entry records the generation's low 29 bits and the epoch's 32: it would be served
// wrongly only if its stripe moved exactly a multiple of 2^29 times between its snapshot and
// its first lookup, or the epoch a multiple of 2^32 times during its life.
type Snapshot struct{ gen, epoch uint32 }

// shard holds counters, padded to its own cache line. A caller picks its shard at random
// (cheaprand is per-thread: no lock, two nanoseconds), not by key hash, so that cores
// reading one hot key do not all write to one cache line; totals are sums over shards (an
// Owner's lookup counters are sharded the same way). entered and left count the calls into
// ristretto, so that Close can wait for those in flight before it closes ristretto (which
// panics on a send to its closed buffers otherwise); front hits never call it.
type shard struct {
	entered atomic.Uint64 // calls into ristretto started
	left    atomic.Uint64 // calls into ristretto finished
	_       [48]byte
}

// Config is every setting of an L1.
type Config struct {
	// MaxBytes bounds the sum of the entries' costs (their encoded sizes plus overhead).
	MaxBytes int64
	// Disabled makes an L1 that holds nothing.
	Disabled bool
	// TTLCap caps an entry's life; 0: no cap beyond the TTL given at each fill.
	TTLCap time.Duration
	// MaxStale is the fail-safe bound: how long past its freshness GetStale still returns
	// an entry. 0 turns GetStale off.
	MaxStale time.Duration
	// EagerRefresh, in (0, 1), makes a lookup report a refresh as due once an entry has
	// lived that fraction of its TTL. 0 turns it off.
	EagerRefresh float64
	// Live makes fills trusted from the start. Otherwise nothing is filled until Resume.
	Live bool
	// ExactHits counts every hit rather than a sample of the front's (for tests).
	ExactHits bool
}

// L1 is the in-process tier. It is safe for concurrent use.
type L1 struct {
	store *ristretto.Cache[uint64, *entry] // nil when disabled
	cfg   Config                           // fixed by New

	// Read on every hit, written rarely: a line of their own.
	_         [64]byte
	epoch     atomic.Uint32 // bumped by a flush
	ticks     atomic.Uint32 // the clock: clockTicks since base
	closed    atomic.Bool
	hitSample uint32       // hitSample, or 1 with Config.ExactHits
	eager     bool         // Config.EagerRefresh > 0: values are *refreshing
	tagKeys   strhash.Keys // the tag's hash (see tag)
	_         [64]byte

	stripes [numStripes]atomic.Uint32
	holds   [numStripes]atomic.Uint32             // writes whose fate is not known yet, by stripe (see Hold)
	_       [64]byte                              // the front is read on every hit, the stripes written on every invalidation
	front   [frontSlots]atomic.Pointer[frontItem] // see lookup
	_       [64]byte                              // keep the written shards off the lines of the read-mostly fields
	shards  [numShards]shard
	_       [64]byte

	base     atomic.Int64 // unix nanoseconds of tick 0
	rebased  atomic.Uint32
	clockMu  sync.Mutex // serialises advance and rebase
	maxStale uint64     // Config.MaxStale in ticks, rounded down

	clockStop chan struct{} // closed by Close
	clockDone chan struct{} // closed when the clock goroutine has returned

	live   atomic.Bool  // fills are trusted: invalidations are being heard
	fillMu sync.RWMutex // read-held by fills, write-held by Close and rebase

	ownersMu sync.Mutex // protects owners
	owners   []*Owner   // every NewOwner, for Stats

	slabs entrySlabs // where Fill takes its entries from
}

// New returns an L1 with cfg; it starts one goroutine (a coarse clock) that Close stops.
func New(cfg Config) (*L1, error) {
	l := &L1{cfg: cfg, hitSample: hitSample, eager: cfg.EagerRefresh > 0, tagKeys: strhash.New()}
	if cfg.ExactHits {
		l.hitSample = 1
	}
	l.maxStale = uint64(max(cfg.MaxStale, 0) / clockTick)
	l.live.Store(cfg.Live)
	if cfg.Disabled {
		return l, nil
	}
	// ristretto advises ~10 counters per expected entry; assume entries of ~512 bytes. Each
	// counter costs about 5 bytes up front, so they are capped: beyond ~800,000 entries,
	// admission is less precise rather than the budget's overhead unbounded.
	counters := min(max(cfg.MaxBytes/512*10, minCounters), maxCounters)
	store, err := ristretto.NewCache(&ristretto.Config[uint64, *entry]{
		NumCounters:        counters,
		MaxCost:            cfg.MaxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
		// Evicted: out of the front too. (A replacement is Fill's to handle; nothing is
		// deleted.)
		OnEvict: func(it *ristretto.Item[*entry]) {
			if it.Value != nil {
				l.unfront(it.Key, it.Value)
			}
		},
		// Evicted, rejected, replaced, or cleared by Close: the value is released, though the
		// entry's slab may live on (see slab.go). (A Set that ristretto drops never gets here:
		// Fill clears it.)
		OnExit: func(e *entry) {
			if e != nil {
				e.val.clear()
			}
		},
	})
	if err != nil {
		return nil, err
	}
	l.store = store
	l.base.Store(time.Now().UnixNano())
	l.clockStop, l.clockDone = make(chan struct{}), make(chan struct{})
	go l.runClock()
	return l, nil
}

func (l *L1) runClock() {
	defer close(l.clockDone)
	t := time.NewTicker(clockTick)
	defer t.Stop()
	for {
		select {
		case <-l.clockStop:
			return
		case now := <-t.C:
			l.advance(now.UnixNano())
		}
	}
}

// advance moves the clock to now (unix nanoseconds), rebasing it first when it has reached
// rebaseTicks.
func (l *L1) advance(now int64) {
	l.clockMu.Lock()
	defer l.clockMu.Unlock()
	if (now-l.base.Load())/int64(clockTick) >= rebaseTicks {
		l.rebaseLocked(now)
	}
	l.ticks.Store(uint32(max(now-l.base.Load(), 0) / int64(clockTick)))
}

// rebaseLocked moves the clock's base to now and makes every entry unservable, fail-safe
// included: their expiries count from the old base. The epoch moves before the ticks go back,
// and lookups read the ticks first: one that reads the new ticks sees the new epoch. Fills
// are held off meanwhile, as they turn an expiry into ticks from the base. clockMu is held.
func (l *L1) rebaseLocked(now int64) {
	l.fillMu.Lock()
	defer l.fillMu.Unlock()
	l.rebased.Store(l.epoch.Add(1))
	l.base.Store(now)
	l.ticks.Store(0)
	l.clearFront()
}

// Snapshot is taken before the Redis read or write whose result Fill may store.
func (l *L1) Snapshot(h uint64) Snapshot {
	return Snapshot{gen: l.stripes[h&stripeMask].Load(), epoch: l.epoch.Load()}
}

// Current reports whether nothing has moved the key's stripe or the epoch since s: no
// invalidation heard since, of this key or of another of its stripe, and no flush.
func (l *L1) Current(h uint64, s Snapshot) bool { return l.current(h, s) }

func (l *L1) current(h uint64, s Snapshot) bool {
	return s.epoch == l.epoch.Load() && s.gen == l.stripes[h&stripeMask].Load()
}

// tag is the L1's own hash of owner's key, which its entry records (see the package doc).
func (l *L1) tag(owner *Owner, key string) uint32 {
	return uint32((l.tagKeys.Hash(key) ^ owner.salt) >> 32)
}

// Invalidate makes the entry of the key with hash h unservable, and any entry of that key
// being filled from a read made before now. It marks the entry itself dead, so that no other
// key's entry is touched, and bumps the key's stripe for fills in flight (whose entries are
// not in ristretto yet): their first lookup finds the stripe moved and treats them as dead.
// The stripe is bumped first: a lookup that confirms an entry before the bump found it in
// ristretto before the bump, where this finds it too. No lock of ours, no blocking: safe on
// any goroutine, rueidis's reader included (ristretto's Get takes a shard's read lock).
func (l *L1) Invalidate(h uint64) {
	l.stripes[h&stripeMask].Add(1)
	l.kill(h)
}

// Renew is Invalidate for a write made under snapshot s whose value this instance keeps: it
// makes every other entry of the key, and every fill in flight from a read made before now,
// unservable, and returns the snapshot under which to Fill the written value. It does so only
// if nothing has moved the key's stripe or the epoch since s (no invalidation heard since,
// of this key or another of its stripe); otherwise it is Invalidate, and ok is false: the
// written value is not to be kept.
func (l *L1) Renew(h uint64, s Snapshot) (_ Snapshot, ok bool) {
	stripe := &l.stripes[h&stripeMask]
	if s.epoch != l.epoch.Load() || !stripe.CompareAndSwap(s.gen, s.gen+1) {
		l.Invalidate(h)
		return Snapshot{}, false
	}
	l.kill(h)
	return Snapshot{gen: s.gen + 1, epoch: s.epoch}, true
}

// RenewMany is Renew for the keys of one batch of writes, hs[i] written under ss[i]: keys
// of one stripe bump it once between them, so that none makes another's value unservable.
// A key whose stripe moved since its snapshot, or since another key's of its stripe, is
// invalidated, and its ok is false; that invalidation also makes the values of the keys of
// its stripe renewed before it unservable (Fill drops them), whatever their ok.
func (l *L1) RenewMany(hs []uint64, ss []Snapshot) (renewed []Snapshot, ok []bool) {
	renewed, ok = make([]Snapshot, len(hs)), make([]bool, len(hs))
	type bump struct {
		from Snapshot
		ok   bool
	}
	var done map[uint64]bump // by stripe, once a second key is seen
	for i, h := range hs {
		stripe := h & stripeMask
		b, seen := done[stripe]
		switch {
		case !seen:
			renewed[i], ok[i] = l.Renew(h, ss[i])
			if done == nil {
				done = make(map[uint64]bump, len(hs))
			}
			done[stripe] = bump{from: ss[i], ok: ok[i]}
		case b.ok && b.from == ss[i]:
			l.kill(h)
			renewed[i], ok[i] = Snapshot{gen: b.from.gen + 1, epoch: b.from.epoch}, true
		default:
			l.Invalidate(h)
		}
	}
	return renewed, ok
}

// Hold is told of a write of the key with hash h whose fate is not known (it may still be
// applied, unreported): the key is invalidated, and no value of its stripe is filled until
// Release. Holds of one stripe add up.
func (l *L1) Hold(h uint64) {
	l.holds[h&stripeMask].Add(1)
	l.Invalidate(h) // after the hold: a fill that missed the hold has a snapshot before this
}

// Release ends a Hold once the write's fate is known: the key is invalidated again, so that
// a fill from a read made during the hold is never served, and then filled as usual.
func (l *L1) Release(h uint64) {
	l.Invalidate(h)
	l.holds[h&stripeMask].Add(^uint32(0))
}

// kill marks the key's entries dead, in the front and in ristretto.
func (l *L1) kill(h uint64) {
	if l.store == nil {
		return
	}
	if fi := l.front[h&frontMask].Load(); fi != nil && fi.h == h {
		fi.e.kill()
	}
	if e, ok := l.storeGet(h); ok {
		e.kill()
	}
}

// storeGet is ristretto's Get, counted so that Close can wait for it; after Close it misses.
func (l *L1) storeGet(h uint64) (*entry, bool) {
	sh := &l.shards[cheaprand()%numShards]
	sh.entered.Add(1)
	defer sh.left.Add(1)
	if l.closed.Load() {
		return nil, false
	}
	return l.store.Get(h)
}

// unfront takes e, held under h, out of the front if it is there.
func (l *L1) unfront(h uint64, e *entry) {
	slot := &l.front[h&frontMask]
	if fi := slot.Load(); fi != nil && fi.e == e {
		slot.CompareAndSwap(fi, nil)
	}
}

// Flush makes every entry unservable (one atomic add), and empties the front, whose
// entries are unservable too but would be kept alive (4096 loads, a few µs).
func (l *L1) Flush() {
	l.epoch.Add(1)
	l.clearFront()
}

func (l *L1) clearFront() {
	for i := range l.front {
		if l.front[i].Load() != nil {
			l.front[i].Store(nil)
		}
	}
}

// Pause stops trusting fills (invalidations may be lost from now on) and reports whether
// they were trusted until now.
func (l *L1) Pause() (wasLive bool) { return l.live.Swap(false) }

// Resume trusts fills again. Flush first: what was filled before is not known to be current.
func (l *L1) Resume() { l.live.Store(true) }

// TTLCap is Config.TTLCap: no entry lives longer.
func (l *L1) TTLCap() time.Duration { return l.cfg.TTLCap }

// Live reports whether fills are trusted.
func (l *L1) Live() bool { return l.live.Load() }

// Get returns the value cached for (owner, key) under hash h if it may be served. It is the
// hot path: no allocation, no lock of ours.
func (l *L1) Get(h uint64, owner *Owner, key string) (any, bool) {
	v, ok := l.lookup(h, owner, key)
	return l.unwrap(v, ok)
}

// unwrap is what a stored value v is to its owner: itself, or with eager refresh the value
// its *refreshing holds.
func (l *L1) unwrap(v any, ok bool) (any, bool) {
	if ok && l.eager {
		v = v.(*refreshing).v
	}
	return v, ok
}

// GetRefresh is Get that also reports whether an eager refresh of the entry is due.
func (l *L1) GetRefresh(h uint64, owner *Owner, key string) (v any, refreshDue, ok bool) {
	v, ok = l.lookup(h, owner, key)
	if ok && l.eager {
		r := v.(*refreshing)
		return r.v, l.ticks.Load() > r.at, true
	}
	return v, false, ok
}

func (l *L1) lookup(h uint64, owner *Owner, key string) (any, bool) {
	if l.store == nil {
		return nil, false
	}
	tag := l.tag(owner, key)
	r := cheaprand()
	// r's bits: 0-4 the front sample, 5-8 the hit sample, 9-14 the promotion, 16-21 the shard.
	slot, stripe := &l.front[h&frontMask], &l.stripes[h&stripeMask]
	if fi := slot.Load(); fi != nil && fi.h == h && fi.e.tag == tag && fi.gen == stripe.Load() && l.servable(fi.e, h) {
		// The hot path: no lock, no atomic write but sampled ones. (An entry ristretto has
		// let go of since its promotion has no value: ristretto may hold a newer one.)
		if v, ok := fi.e.val.load(); ok {
			if r%frontSample == 0 {
				l.storeGet(h) // feed ristretto's frequency sketch, which counts a key's heat by its Gets
			}
			if (r>>5)%l.hitSample == 0 {
				owner.shards[(r>>16)%ownerShards].hits.Add(uint64(l.hitSample))
			}
			return v, true
		}
	}
	sh := &owner.shards[(r>>16)%ownerShards]
	gen := stripe.Load() // before the Get: see frontItem
	if e, ok := l.storeGet(h); ok && e.tag == tag && l.servable(e, h) {
		if v, ok := e.val.load(); ok { // else evicted or replaced since the Get
			if e.small() && (r>>9)%frontPromote == 0 {
				if fi := slot.Load(); fi == nil || fi.e != e || fi.gen != gen {
					l.promote(slot, e, h, gen)
				}
			}
			sh.hits.Add(1)
			return v, true
		}
	}
	sh.misses.Add(1)
	return nil, false
}

// promote puts e, found in ristretto under h while its stripe was at gen, in the front.
func (l *L1) promote(slot *atomic.Pointer[frontItem], e *entry, h uint64, gen uint32) {
	fi := &frontItem{e: e, h: h, gen: gen}
	slot.Store(fi)
	// A newer fill may have replaced e in ristretto (and taken e's predecessor out of the
	// front) between the Get and the Store: then e must not stay in the front.
	if cur, ok := l.storeGet(h); !ok || cur != e {
		slot.CompareAndSwap(fi, nil)
	}
}

// servable tells whether e, the entry of the lookup's owner and key (its tag matched), may
// be served: filled after the last flush, not invalidated since its snapshot, and fresh. The
// clock is read before the epoch: see rebaseLocked.
func (l *L1) servable(e *entry, h uint64) bool {
	now := l.ticks.Load()
	if e.epoch != l.epoch.Load() || now >= e.freshUntil {
		return false
	}
	m := e.gs.Load()
	switch m & stateMask {
	case confirmed:
		return true
	case dead:
		return false
	}
	return l.confirm(e, h, m)
}

// confirm decides a fresh entry's state at its first lookup: dead if its stripe moved since
// its snapshot (an invalidation of its key may have raced its fill; or one of another key
// of the stripe, a false invalidation confined to this moment), confirmed otherwise. m is its
// gs, read fresh.
func (l *L1) confirm(e *entry, h uint64, m uint32) bool {
	if !e.filledUnder(l.stripes[h&stripeMask].Load()) {
		e.gs.CompareAndSwap(m, m&^stateMask|dead)
		return false
	}
	e.gs.CompareAndSwap(m, m&^stateMask|confirmed) // fails if an invalidation marked it dead meanwhile
	return e.state() == confirmed
}

// Fill stores a value read or written under snapshot s, unless s is already stale or
// fills are not trusted. ttl is the Redis entry's remaining life: the L1 entry never
// outlives it. fullTTL is the entry's whole TTL, from which eager refresh is timed. cost is
// the value's encoded size.
func (l *L1) Fill(h uint64, s Snapshot, owner *Owner, key string, value any, cost int64, ttl, fullTTL time.Duration) {
	if l.store == nil || !l.live.Load() || !l.current(h, s) || ttl <= 0 || l.holds[h&stripeMask].Load() != 0 {
		return
	}
	tag := l.tag(owner, key)
	if cur, ok := l.storeGet(h); ok && cur.tag == tag && cur.epoch == s.epoch &&
		cur.state() == confirmed && l.ticks.Load() < cur.freshUntil {
		// The key's entry is confirmed and not dead: no invalidation of the key has come since
		// its snapshot, so it holds what this fill would, or an older value that the coming
		// invalidation will end as it would have ended this one. Replacing it would put a fresh
		// entry in its place, which a write to another key of its stripe could cost before its
		// first lookup.
		return
	}
	now := time.Now().UnixNano()
	refreshAt := int64(0)
	if l.eager {
		refreshAt = now + int64(ttl) - int64((1-l.cfg.EagerRefresh)*float64(fullTTL))
	}
	if l.cfg.TTLCap > 0 && l.cfg.TTLCap < ttl {
		ttl = l.cfg.TTLCap
	}
	gs := s.gen << genShift // state: fresh (0)
	if cost <= frontMaxCost {
		gs |= smallBit
	}
	// No ristretto TTL: ristretto would read the clock on every Get. Expired entries stay
	// until the cost budget evicts them (rarely read, they go first), and are never served.
	l.fillMu.RLock()
	defer l.fillMu.RUnlock()
	if l.closed.Load() {
		return
	}
	// The tick from which the entry is not served: with a clock up to a tick behind, the
	// last tick it is served in ends before its L2 expiry (now + ttl).
	base := l.base.Load()
	until := (now+int64(ttl)-base)/int64(clockTick) - 1
	if until <= int64(l.ticks.Load()) {
		return
	}
	if l.eager {
		value = &refreshing{v: value, at: uint32(min(max((refreshAt-base)/int64(clockTick), 0), math.MaxUint32))}
	}
	e := l.slabs.newEntry()
	e.val.set(value)
	e.tag, e.freshUntil, e.epoch = tag, uint32(min(until, math.MaxUint32)), s.epoch
	e.gs.Store(gs)
	if !l.store.Set(h, e, cost+EntryOverhead) {
		e.val.clear() // dropped (ristretto's buffer was full): never stored, no OnExit to come
		return
	}
	// A replaced entry of the key may be in the front: take it out (an evicted one is taken
	// out by OnEvict).
	if fi := l.front[h&frontMask].Load(); fi != nil && fi.h == h && fi.e != e {
		l.front[h&frontMask].CompareAndSwap(fi, nil)
	}
}

// GetStale is the fail-safe lookup: the last value of the key this instance held, even if
// it is no longer fresh or the L1 was flushed (Redis unreachable), provided no newer write to
// the key is known (its stripe is unchanged) and it is at most MaxStale past its freshness.
func (l *L1) GetStale(h uint64, owner *Owner, key string) (any, bool) {
	if l.store == nil || l.cfg.MaxStale <= 0 || l.closed.Load() {
		return nil, false
	}
	e, ok := l.storeGet(h)
	if !ok || e.tag != l.tag(owner, key) {
		return nil, false
	}
	// Served while the clock is short of freshUntil + MaxStale (rounded down to ticks): with a
	// clock a tick behind, before the L2 expiry + MaxStale, as freshUntil is for the L2 expiry.
	// The clock first, then the rebase: an entry whose expiry counts from an older base is not
	// compared with ticks from the new one.
	if now := l.ticks.Load(); uint64(now) >= uint64(e.freshUntil)+l.maxStale || int32(e.epoch-l.rebased.Load()) < 0 {
		return nil, false
	}
	switch e.state() {
	case dead:
		return nil, false
	case fresh:
		if !e.filledUnder(l.stripes[h&stripeMask].Load()) {
			return nil, false
		}
	}
	return l.unwrap(e.val.load())
}

// Stats are the lookup counters since New, the sums of its owners' (see Owner.Stats).
func (l *L1) Stats() (hits, misses uint64) {
	l.ownersMu.Lock()
	owners := l.owners
	l.ownersMu.Unlock()
	for _, o := range owners {
		h, m := o.Stats()
		hits, misses = hits+h, misses+m
	}
	return hits, misses
}

// Wait waits until the fills made so far are applied (ristretto buffers them).
func (l *L1) Wait() {
	if l.store != nil {
		l.store.Wait()
	}
}

// Close waits for lookups in flight and stops ristretto's goroutines and the clock. Later
// lookups miss and later fills do nothing. It is idempotent.
func (l *L1) Close() {
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

// quiet reports whether no call into ristretto is in flight. Finished counts are read before
// started counts: a call counted as finished was counted as started too, so equality means
// none is between the two.
func (l *L1) quiet() bool {
	var left, entered uint64
	for i := range l.shards {
		left += l.shards[i].left.Load()
	}
	for i := range l.shards {
		entered += l.shards[i].entered.Load()
	}
	return left == entered
}
