package tiered

import (
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/synspirit/tiercache/internal/l1"
)

// namespace is what every group of one name in a Cache shares: its generation, its L1
// entries (one l1.Owner) and the value type and codec that its keys are written with.
type namespace struct {
	name   string
	genKey string // <KeyPrefix>tiercache:gen:<name>
	prefix string // <KeyPrefix><name>@: every key of every generation
	// armed: writes under prefix are reported to this instance (tracked on every node, or
	// another mechanism covers them). Read before the snapshot of a read whose value may go
	// to L1; set once, never cleared (a lost connection pauses the whole L1 instead).
	armed     atomic.Bool
	l1Wanted  atomic.Bool // a group of this name keeps values in L1: its prefix is wanted
	owner     *l1.Owner
	valueType reflect.Type
	codec     Codec
	state     atomic.Pointer[groupState] // the current generation, or a stale marker
	lastKnown atomic.Pointer[groupState] // the last generation read, for fail-safe without Redis
	st        groupCounters              // see GroupStats; its L1 lookups count in owner
}

// groupCounters are a namespace's share of the cache's slow-path counters: each is added to
// beside the cache-wide one.
type groupCounters struct {
	l2Hits, l2Misses, l2Errors atomic.Uint64
	loads, loadErrors          atomic.Uint64
	loadsYielded               atomic.Uint64
}

// forgetGen makes the group re-read its generation before its next use. Safe on a reader
// goroutine: no lock, one small allocation.
func (ns *namespace) forgetGen() { ns.state.Store(&groupState{}) }

// registry holds a Cache's namespaces by name: O(1) to join, lock-free to look up from
// invalidation callbacks.
type registry struct {
	mu     sync.Mutex // serialises join
	byName sync.Map   // string → *namespace
}

// join returns the namespace of name, making it on first use. A name in use with another
// value type or codec is refused: the groups would read each other's values.
func (r *registry) join(l *l1.L1, keyPrefix, name string, valueType reflect.Type, codec Codec) (*namespace, error) {
	if v, ok := r.byName.Load(name); ok {
		return v.(*namespace).compatible(valueType, codec)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.byName.Load(name); ok {
		return v.(*namespace).compatible(valueType, codec)
	}
	ns := &namespace{
		name:      name,
		genKey:    genKeyPrefix(keyPrefix) + name,
		prefix:    keyPrefix + name + "@",
		owner:     l.NewOwner(name),
		valueType: valueType,
		codec:     codec,
	}
	ns.state.Store(&groupState{})
	r.byName.Store(name, ns)
	return ns, nil
}

func (ns *namespace) compatible(valueType reflect.Type, codec Codec) (*namespace, error) {
	if valueType != ns.valueType {
		return nil, fmt.Errorf("the name is in use by a group of %v values, not %v", ns.valueType, valueType)
	}
	if !sameCodec(codec, ns.codec) {
		return nil, fmt.Errorf("the name is in use by a group with codec %T, not %T", ns.codec, codec)
	}
	return ns, nil
}

// sameCodec: codecs of one comparable type must be equal; otherwise the type decides.
func sameCodec(a, b Codec) bool {
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	if ta != tb {
		return false
	}
	if ta.Comparable() {
		return a == b
	}
	return true
}

// lookup returns the namespace of name, if any group of that name exists.
func (r *registry) lookup(name string) (*namespace, bool) {
	v, ok := r.byName.Load(name)
	if !ok {
		return nil, false
	}
	return v.(*namespace), true
}

// forgetAllGens is forgetGen for every namespace: after a flush, a generation change may
// have been missed.
// One marker serves them all: it stands for this flush, and a later invalidation of any of
// them stores a marker of its own.
func (r *registry) forgetAllGens() {
	marker := &groupState{}
	r.byName.Range(func(_, v any) bool {
		v.(*namespace).state.Store(marker)
		return true
	})
}
