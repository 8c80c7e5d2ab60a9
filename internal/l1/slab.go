package l1

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// Entries are allocated slabEntries at a time, in slabs, rather than one by one.
//
// Why: an entry is a small object with a pointer in it, and a fill allocates it in the middle
// of a Redis read's garbage (the commands, the reply, the decoder's scratch), much of it in the
// same size class. Allocated one by one, each entry ended up alone among dead objects in its
// span, and Go's collector paid for a span visit per entry at every cycle: with 100,000 entries
// held, a GC cycle cost tiercache 3-4× what it cost a raw ristretto holding the same values
// (BenchmarkL1Size). In slabs the entries of a fill burst sit together, one object of 256 bytes
// per 8 entries.
//
// The price of slabs is that a slab lives while any of its entries is referenced. So that an
// entry gone from the L1 does not keep its value alive through a sibling, the value is cleared
// when the entry leaves ristretto (evicted, rejected, replaced, or dropped from ristretto's full
// buffer before it was stored): a gone entry costs its 32 bytes until its slab goes, never its
// value. EntryOverhead charges for those bytes. Lookups that still hold a cleared entry find no
// value and miss.

// slabEntries is how many entries a slab holds: 8 × 32 bytes, a size class of its own. At
// worst (one live entry per slab, the rest gone) entries cost 8× their size, 256 bytes; under
// heavy churn about 180 (EntryOverhead). With 8 the collector's cost is already a raw
// ristretto's (BenchmarkL1Size, 100k entries); 16 lowered it no further and wasted ~270.
const slabEntries = 8

// slabCursor hands out the entries of one slab in turn. Cursors live in a sync.Pool, one per P
// or so: no lock, and the entries of one goroutine's fills are neighbours. A cursor the pool
// drops at a GC leaves the rest of its slab unused.
type slabCursor struct {
	slab *[slabEntries]entry
	next int
}

// entrySlabs is an L1's slab cursors.
type entrySlabs struct{ cursors sync.Pool }

// newEntry returns an unused entry.
func (s *entrySlabs) newEntry() *entry {
	c, _ := s.cursors.Get().(*slabCursor)
	if c == nil {
		c = new(slabCursor)
	}
	if c.slab == nil || c.next == slabEntries {
		c.slab, c.next = new([slabEntries]entry), 0
	}
	e := &c.slab[c.next]
	c.next++
	s.cursors.Put(c)
	return e
}

// value is an entry's value as its two interface words, so that the data word can be cleared
// atomically while lookups may be reading it. typ is written before the entry is published and
// never again; data is read and cleared with atomics, and is nil only once cleared (a nil data
// word of the value itself, a nil pointer, is stored as nilData).
type value struct {
	typ  unsafe.Pointer
	data unsafe.Pointer // atomic
}

// nilData stands in for a value whose data word is nil (a nil pointer, map, chan or func).
var nilData byte

// eface is the layout of an interface value (any): its type word, then its data word.
type eface struct{ typ, data unsafe.Pointer }

// set stores v. Only before the entry is published.
func (v *value) set(x any) {
	w := (*eface)(unsafe.Pointer(&x))
	v.typ = w.typ
	data := w.data
	if data == nil {
		data = unsafe.Pointer(&nilData)
	}
	atomic.StorePointer(&v.data, data)
}

// load returns the value, or false once it has been cleared.
func (v *value) load() (x any, ok bool) {
	data := atomic.LoadPointer(&v.data)
	switch data {
	case nil:
		return nil, false
	case unsafe.Pointer(&nilData):
		data = nil
	}
	w := (*eface)(unsafe.Pointer(&x))
	w.typ, w.data = v.typ, data
	return x, true
}

// clear drops the reference to the value.
func (v *value) clear() { atomic.StorePointer(&v.data, nil) }
