package tiered

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/synspirit/tiercache/bus"
	"github.com/synspirit/tiercache/internal/flight"
	"github.com/synspirit/tiercache/internal/l1"
	"github.com/synspirit/tiercache/internal/sentinel"
)

// Group is a typed namespace of the cache: the original DataCache(prefix, ttl). Its keys live
// in Redis as <KeyPrefix><name>@<n>:<key> after n Clears (n = 0 at first), with the group's
// TTL. Values served from L1 are shared between callers: treat them as
// read-only (copy a slice or map before changing it).
type Group[T any] struct {
	groupCore
}

// groupCore is the part of a Group that does not depend on T.
type groupCore struct {
	c          *Cache
	ns         *namespace // shared by every group of this name in c
	name       string
	ttl        time.Duration
	codec      Codec
	codecID    byte
	useL1      bool
	l1MaxEntry int64 // 0: no limit of its own
	maxValue   int64 // largest encoded value stored
	// notFoundTTL: how long a miss the loader reported is cached (WithNotFoundTTL); 0: not.
	notFoundTTL time.Duration
	jitterF     float64         // WithTTLJitter
	timeouts    flight.Timeouts // WithSoftTimeout, WithHardTimeout
	err         error           // a bad name or option: every call returns it
}

// groupState is what a group's keys depend on: its generation. A state without known set is
// a marker that the generation must be re-read from Redis; its pointer identity is its
// version, so a read that raced an invalidation is not stored (compare-and-swap).
type groupState struct {
	known bool
	gen   string // see generation.go
	base  string // <KeyPrefix><name>@<gen>:
	hs    hasher
	bh    uint64 // hs.base(base)
}

// newGroupState is generation gen of group name: its keys are <keyPrefix><name>@<gen>:<key>.
// No group name has '@' or starts with "tiercache" (the cache's own keys), so no two (group,
// key) pairs share a Redis key, and <keyPrefix><name>@, the group's tracking prefix, covers
// no other group's keys.
func newGroupState(hs hasher, keyPrefix, name, gen string) *groupState {
	base := keyPrefix + name + "@" + gen + ":"
	return &groupState{known: true, gen: gen, base: base, hs: hs, bh: hs.base(base)}
}

// hash is the L1 key of key: the hash of its full Redis key, base + key.
func (st *groupState) hash(key string) uint64 { return st.hs.key(st.bh, key) }

// GroupOption configures a group.
type GroupOption func(*groupCore)

// WithCodec sets the group's codec (default: the cache's, JSON unless set).
func WithCodec(codec Codec) GroupOption {
	return func(g *groupCore) {
		if codec == nil {
			g.err = sentinel.Join(g.err, errors.New("WithCodec(nil)"))
			return
		}
		g.codec = codec
	}
}

// WithoutL1 keeps the group's values in Redis only.
func WithoutL1() GroupOption { return func(g *groupCore) { g.useL1 = false } }

// WithL1MaxEntryBytes keeps values whose encoded size exceeds n out of L1 (they are served
// from Redis), so that a few large values cannot push out many small ones.
func WithL1MaxEntryBytes(n int64) GroupOption {
	return func(g *groupCore) {
		if n <= 0 {
			g.err = sentinel.Join(g.err, fmt.Errorf("WithL1MaxEntryBytes(%d): want > 0", n))
			return
		}
		g.l1MaxEntry = n
	}
}

// WithMaxValueBytes sets the largest encoded value the group stores (default
// Options.MaxValueBytes); larger ones are refused with ErrTooLarge.
func WithMaxValueBytes(n int64) GroupOption {
	return func(g *groupCore) {
		if n <= 0 || n > MaxValueBytesLimit {
			g.err = sentinel.Join(g.err, fmt.Errorf("WithMaxValueBytes(%d): want 1 to %d", n, MaxValueBytesLimit))
			return
		}
		g.maxValue = n
	}
}

// WithNotFoundTTL caches misses: when a loader returns an error matching ErrNotFound, the
// miss itself is kept for d, in Redis and L1, coherent like any value (a Set of the key
// anywhere replaces it at once on every instance). Until then GetOrLoad returns ErrNotFound
// without calling the loader: a missing ID reaches the database once per d, not on every
// request. Off by default.
func WithNotFoundTTL(d time.Duration) GroupOption {
	return func(g *groupCore) {
		if d <= 0 || d > MaxTTL {
			g.err = sentinel.Join(g.err, fmt.Errorf("WithNotFoundTTL(%v): want (0, MaxTTL]", d))
			return
		}
		g.notFoundTTL = d
	}
}

// WithTTLJitter spreads every TTL the group stores over [ttl×(1−f), ttl], so that keys
// stored together (a cold start, a batch) do not all expire at the same moment. f is in
// [0, 1); 0 (the default) stores TTLs as they are.
func WithTTLJitter(f float64) GroupOption {
	return func(g *groupCore) {
		if !(f >= 0 && f < 1) {
			g.err = sentinel.Join(g.err, fmt.Errorf("WithTTLJitter(%v): want [0, 1)", f))
			return
		}
		g.jitterF = f
	}
}

// WithSoftTimeout lets a GetOrLoad whose loader is slow answer with a fail-safe value: past
// d, if the group holds a value of the key past its TTL (within Options.FailSafeMaxStale),
// GetOrLoad returns it, and the load goes on in the background to refresh the entry. Without
// such a value it keeps waiting. Needs FailSafeMaxStale to have any effect. 0: none.
func WithSoftTimeout(d time.Duration) GroupOption {
	return func(g *groupCore) {
		if d < 0 || d > MaxTTL {
			g.err = sentinel.Join(g.err, fmt.Errorf("WithSoftTimeout(%v): want [0, MaxTTL]", d))
			return
		}
		g.timeouts.Soft = d
	}
}

// WithHardTimeout bounds how long a GetOrLoad waits for its loader: past d it returns a
// fail-safe value if it has one (see WithSoftTimeout), else an error matching ErrLoadTimeout,
// and the load is abandoned (its context cancelled) unless another caller still waits for it.
// 0: none (the caller's context bounds the wait).
func WithHardTimeout(d time.Duration) GroupOption {
	return func(g *groupCore) {
		if d < 0 || d > MaxTTL {
			g.err = sentinel.Join(g.err, fmt.Errorf("WithHardTimeout(%v): want [0, MaxTTL]", d))
			return
		}
		g.timeouts.Hard = d
	}
}

// NewGroup returns the group name of c with L2 TTL ttl (0: the cache's DefaultTTL). A name
// is non-empty, without spaces, control characters or '@', e.g. "data:articles:list". A
// second group of a name already in use in c must have the same T and codec: the two then
// share their keys, their L1 entries and Clear. A bad name, TTL or option, or another T or
// codec under a name in use, does not panic: [Group.Err] reports it, wrapping
// ErrInvalidOptions, and every call on the group returns it.
func NewGroup[T any](c *Cache, name string, ttl time.Duration, opts ...GroupOption) *Group[T] {
	g := &Group[T]{groupCore{c: c, name: name, ttl: ttl, useL1: true}}
	if c == nil {
		g.err = fmt.Errorf("%w: NewGroup with a nil *Cache", ErrInvalidOptions)
		return g
	}
	var errs []error
	if err := validateGroupName(name); err != nil {
		errs = append(errs, err)
	}
	switch {
	case ttl < 0:
		errs = append(errs, fmt.Errorf("negative ttl %v", ttl))
	case ttl > MaxTTL:
		errs = append(errs, fmt.Errorf("ttl %v is longer than MaxTTL (%v)", ttl, MaxTTL))
	case ttl == 0:
		g.ttl = c.opts.DefaultTTL
	}
	g.codec = c.opts.Codec
	g.maxValue = c.opts.MaxValueBytes
	for _, o := range opts {
		o(&g.groupCore)
	}
	if g.err != nil {
		errs = append(errs, g.err)
	}
	g.codecID = codecID(g.codec)
	if t := reflect.TypeFor[T](); g.codecID == codecRaw && t != reflect.TypeFor[[]byte]() && t != reflect.TypeFor[string]() {
		errs = append(errs, fmt.Errorf("the Raw codec stores []byte or string values, not %v", t))
	}
	if len(errs) == 0 {
		var err error
		if g.ns, err = c.groups.join(c.l1, c.opts.KeyPrefix, name, reflect.TypeFor[T](), g.codec); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		g.err = fmt.Errorf("%w: group %q: %w", ErrInvalidOptions, name, sentinel.Join(errs...))
		return g
	}
	g.err = nil
	if g.useL1 && !c.opts.DisableL1 && g.ns.l1Wanted.CompareAndSwap(false, true) {
		c.track(g.ns)
	}
	return g
}

func validateGroupName(name string) error {
	if name == "" {
		return errors.New("empty group name")
	}
	if strings.IndexFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '@' }) >= 0 {
		return errors.New("the name has spaces, control characters or '@'")
	}
	if strings.HasPrefix(name, reservedPrefix) {
		return fmt.Errorf("names starting with %q are the cache's own", reservedPrefix)
	}
	return nil
}

// Err is the error every call on the group returns when NewGroup was given a bad name,
// TTL or option (wrapping ErrInvalidOptions); nil for a usable group.
func (g *Group[T]) Err() error { return g.err }

// Name is the group's name.
func (g *Group[T]) Name() string { return g.name }

// TTL is the group's L2 TTL.
func (g *Group[T]) TTL() time.Duration { return g.ttl }

// Key is the original make_key(prefix, *args): a stable hash of args, identical across
// processes, machines and Go versions (see the package doc). It returns "" only for an
// argument that cannot be encoded (a JSON error), which every call then rejects.
func (g *Group[T]) Key(args ...any) string {
	k, err := makeKey(args)
	if err != nil {
		if g.c != nil {
			g.c.log.Error("unusable key argument", zap.String("group", g.name), zap.Error(err))
		}
		return ""
	}
	return k
}

// RedisKey is the Redis key under which key is stored now (it changes with Clear).
func (g *Group[T]) RedisKey(ctx context.Context, key string) (string, error) {
	if err := g.check(key); err != nil {
		return "", err
	}
	st, err := g.resolve(ctx)
	if err != nil {
		return "", g.fail("redis key", key, err)
	}
	return st.base + key, nil
}

// check refuses calls on a bad group, with an empty key, or on a closed cache.
func (g *groupCore) check(key string) error {
	if g.err != nil {
		return g.err
	}
	if key == "" {
		return &opError{op: "call", where: g.name, err: errEmptyKey}
	}
	if g.c.isClosed() {
		return ErrClosed
	}
	return nil
}

// fail wraps err, from operation op on key, for the caller: "tiered: get articles:k: …".
// Sentinels that are the whole story (ErrClosed, a bare ErrNotFound) are returned as they
// are.
func (g *groupCore) fail(op, key string, err error) error {
	if err == ErrNotFound || err == ErrClosed {
		return err
	}
	if errors.Is(err, ErrClosed) {
		return ErrClosed
	}
	where := g.name + ":" + key
	if key == "" { // a call on the group, or on many keys
		where = g.name
	}
	return &opError{op: op, where: where, err: err}
}

// Get returns the value of key: from L1 if it holds a current one, else from Redis (and then
// keeps it in L1). It returns an error matching ErrNotFound on a miss, ErrUnavailable when
// Redis cannot be reached, and the context's error when ctx ends first.
func (g *Group[T]) Get(ctx context.Context, key string) (T, error) {
	var zero T
	if err := g.check(key); err != nil {
		return zero, err
	}
	st, err := g.resolve(ctx)
	if err != nil {
		return zero, g.fail("get", key, err)
	}
	h := st.hash(key)
	if v, ok := g.c.l1.Get(h, g.ns.owner, key); ok {
		if v, ok := g.fromL1(h, v); ok {
			if t, ok := v.(T); ok && v != negative {
				return t, nil
			}
			return zero, g.fail("get", key, errCachedMiss)
		}
	}
	v, err := g.fetch(ctx, st, key, h)
	if err != nil {
		return zero, g.fail("get", key, err)
	}
	return v.(T), nil
}

// fetch reads key from Redis and fills L1. A value that cannot be decoded is a miss; a
// cached miss (WithNotFoundTTL) is errCachedMiss, and kept in L1 as such.
func (g *Group[T]) fetch(ctx context.Context, st *groupState, key string, h uint64) (any, error) {
	v, _, err := g.fetchCond(ctx, g.snapshot(h), st, key, h, false)
	return v, err
}

// fetchCond is fetch under snapshot s, taken before it; withCond (a load's read), it also
// returns the condition of the load's store (see storeCond) when it found no value to serve.
// A key Redis holds nothing for is ErrNotFound itself (not wrapped).
func (g *Group[T]) fetchCond(ctx context.Context, s snapshot, st *groupState, key string, h uint64, withCond bool) (v any, cond storeCond, err error) {
	withTTL := g.mayFill(s)
	raw, redisTTL, err := g.c.l2Get(ctx, &g.ns.st, st.base+key, g.maxValue, withTTL)
	if err == nil {
		if v, err = g.take(ctx, s, st, key, h, raw, redisTTL); err == nil || err == errCachedMiss {
			return v, cond, err
		}
	}
	if withCond {
		cond = readCond(raw, err, withTTL)
		cond = g.c.digestOf(ctx, st.base+key, cond)
	}
	return v, cond, err
}

// take decodes an envelope read from Redis under snapshot s, and fills L1 with it.
func (g *Group[T]) take(ctx context.Context, s snapshot, st *groupState, key string, h uint64, raw []byte, redisTTL time.Duration) (any, error) {
	o, err := g.open(ctx, st, key, raw)
	if err != nil {
		return nil, err
	}
	return g.keep(o, s, st, key, h, redisTTL)
}

// opened is an envelope read from Redis and decoded, not yet checked against its TTL nor
// filled into L1.
type opened struct {
	v        any // the value, boxed once for L1 and the caller (a struct T is copied at each boxing); nil for a cached miss
	miss     bool
	expiryMs int64
	refs     []tagRef
	size     int64 // of the payload
}

// open decodes an envelope read from Redis. A value that cannot be decoded is a miss, as is
// one a tag invalidated since it was stored.
func (g *Group[T]) open(ctx context.Context, st *groupState, key string, raw []byte) (opened, error) {
	env, err := decodeEnvelope(raw)
	if err == nil && env.codec != g.codecID {
		err = fmt.Errorf("%w: codec %d, group %q uses %d", errForeignValue, env.codec, g.name, g.codecID)
	}
	o := opened{expiryMs: env.expiryMs, size: int64(len(env.payload))}
	if err == nil && env.tags != nil {
		// A tag invalidated since the value was stored makes it a miss, fail-safe included.
		ok, terr := false, error(nil)
		if o.refs, ok, terr = g.c.checkEnvelopeTags(ctx, env); terr != nil {
			return o, terr
		} else if !ok {
			g.c.st.tagStale.Add(1)
			return o, errTagStale
		}
	}
	o.miss = err == nil && env.flags&flagNegative != 0
	if err == nil && !o.miss {
		var v T
		err = g.codec.Unmarshal(env.payload, &v)
		o.v = v
	}
	if err != nil {
		g.c.st.decodeErrors.Add(1)
		g.c.log.Warn("undecodable value in redis: treated as a miss", zap.String("key", st.base+key), zap.Error(err))
		return o, errUndecodable
	}
	return o, nil
}

// keep checks an opened envelope against its TTL and fills L1 with it under snapshot s. A
// value past its TTL is a miss (errStale, with the value, within the fail-safe bound).
func (g *Group[T]) keep(o opened, s snapshot, st *groupState, key string, h uint64, redisTTL time.Duration) (any, error) {
	ttl := g.ttl
	if o.expiryMs > 0 {
		ttl = time.Until(time.UnixMilli(o.expiryMs))
	}
	if ttl <= 0 {
		// Past its TTL: a miss. Within the fail-safe bound, with the value as a last resort.
		if -ttl < g.c.opts.FailSafeMaxStale && !o.miss {
			return o.v, errStale
		}
		return nil, errExpired
	}
	if redisTTL >= 0 && redisTTL < ttl {
		ttl = redisTTL // shortened by another client: Redis drops it sooner than its envelope says
	}
	if o.miss {
		g.fillL1(h, s, st, key, withTags(negative, o.refs), 0, ttl, ttl)
		return nil, errCachedMiss
	}
	g.fillL1(h, s, st, key, withTags(o.v, o.refs), o.size, ttl, g.ttl)
	return o.v, nil
}

// negative stands in L1 for a cached miss.
var negative any = &struct{ negative bool }{true}

// snapshot is taken before a read or write whose value may go to L1: the key's L1 snapshot,
// and whether writes to the group were being reported to this instance by then.
type snapshot struct {
	l1.Snapshot
	armed bool
}

func (g *groupCore) snapshot(h uint64) snapshot {
	armed := g.ns.armed.Load() // before the L1 snapshot: see namespace.armed
	return snapshot{Snapshot: g.c.l1.Snapshot(h), armed: armed}
}

// mayFill tells whether a value read or written under s may go to L1: the group keeps values
// in L1, and writes to its keys reached this instance by then. A read that may not asks
// Redis for no TTL.
func (g *groupCore) mayFill(s snapshot) bool { return s.armed && g.useL1 }

// fillL1 keeps a value in L1 if the group keeps values of that size there, and if a write to
// its key would reach this instance: in BusOnly mode a key too long to publish never goes to
// L1.
func (g *groupCore) fillL1(h uint64, s snapshot, st *groupState, key string, v any, size int64, ttl, fullTTL time.Duration) {
	if !g.mayFill(s) || (g.l1MaxEntry != 0 && size > g.l1MaxEntry) {
		return
	}
	if g.c.mode == BusOnly && len(st.base)+len(key) > maxPublishedKey {
		return
	}
	g.c.l1.Fill(h, s.Snapshot, g.ns.owner, key, v, size, ttl, fullTTL)
}

// keepOwn fills L1 with a value this instance wrote to Redis under snapshot s: through the
// listener if own (see ownWriter), else through the data client. A write through the listener
// is heard of by no instance but the others, so it first makes every other fill of the key
// in flight unservable (a read made before the write, which may carry the value it
// replaced), unless an invalidation of the stripe has come since s: then the value is not
// kept. Through the data client, the write's own push ends the entry a moment later.
func (g *groupCore) keepOwn(own bool, h uint64, s snapshot, st *groupState, key string, v any, size int64, ttl, fullTTL time.Duration) {
	if own {
		renewed, ok := g.c.l1.Renew(h, s.Snapshot)
		if !ok {
			return
		}
		s.Snapshot = renewed
	}
	g.fillL1(h, s, st, key, v, size, ttl, fullTTL)
}

// keepOwnMany is keepOwn's decision for the values of one batch of writes, the key of L1
// hash hs[i] written under ss[i]: the snapshot to fill each under, and whether to keep it.
// Through the listener (own), one bump per stripe for the whole batch (l1.RenewMany), so
// that keys of one stripe do not end each other's values.
func (g *groupCore) keepOwnMany(own bool, hs []uint64, ss []snapshot) (fill []snapshot, keep []bool) {
	if !own {
		keep = make([]bool, len(ss))
		for i := range keep {
			keep[i] = true
		}
		return ss, keep
	}
	l1s := make([]l1.Snapshot, len(ss))
	for i := range ss {
		l1s[i] = ss[i].Snapshot
	}
	var renewed []l1.Snapshot
	renewed, keep = g.c.l1.RenewMany(hs, l1s)
	fill = make([]snapshot, len(ss))
	for i := range ss {
		fill[i] = snapshot{Snapshot: renewed[i], armed: ss[i].armed}
	}
	return fill, keep
}

// maxPublishedKey is the longest Redis key the bus can carry (a uvarint length and the bytes
// within bus.MaxBatchBytes).
const maxPublishedKey = bus.MaxBatchBytes - 10

// Misses that say why; each matches ErrNotFound.
var (
	errUndecodable = notFound("undecodable value")
	errExpired     = notFound("expired")
	errStale       = notFound("stale")       // fetch's answer for a value past its TTL, kept for fail-safe
	errCachedMiss  = notFound("cached miss") // the loader said not found, WithNotFoundTTL ago at most
	errTagStale    = notFound("tag invalidated")
)

// Set stores v under key in Redis with the group's TTL (or TTL(d) among opts), and makes
// every instance drop what it held for key. After Set returns, Get on this instance returns
// v (or something newer). A value whose encoding is larger than the group's MaxValueBytes
// is refused with ErrTooLarge, before anything is sent.
func (g *Group[T]) Set(ctx context.Context, key string, v T, opts ...CallOption) error {
	if err := g.check(key); err != nil {
		return err
	}
	co, err := g.callOptions(opts)
	if err != nil {
		return g.fail("set", key, err)
	}
	ttl := g.jitter(co.ttl)
	refs, err := g.c.tagRefs(ctx, co.tags, true)
	if err != nil {
		return g.fail("set", key, err)
	}
	env, err := g.encode(v, ttl, refs)
	if err != nil {
		return g.fail("set", key, err)
	}
	st, err := g.resolve(ctx)
	if err != nil {
		return g.fail("set", key, err)
	}
	if err := g.write(ctx, st, key, env, ttl, nil); err != nil {
		return g.fail("set", key, err)
	}
	return nil
}

// encodeMiss makes the envelope of a cached miss for a TTL of ttl, with tags refs.
func (g *groupCore) encodeMiss(ttl time.Duration, refs []tagRef) []byte {
	return appendEnvelope(make([]byte, 0, envelopeHeaderSize), flagNegative, g.codecID, time.Now().Add(ttl).UnixMilli(), g.tagSection(refs), nil)
}

// tagSection is the envelope's tag section for refs; nil without tags.
func (g *groupCore) tagSection(refs []tagRef) []byte {
	if len(refs) == 0 {
		return nil
	}
	return appendTagSection(nil, refs, g.c.tagNames(refs))
}

// encode makes the envelope of v for a TTL of ttl, with tags refs, refusing values over the
// group's limit.
func (g *groupCore) encode(v any, ttl time.Duration, refs []tagRef) ([]byte, error) {
	payload, err := g.codec.Marshal(v)
	if err != nil {
		return nil, &opError{op: "encoding", where: "value", err: err, bare: true}
	}
	if n := int64(len(payload)); n > g.maxValue {
		g.c.st.tooLarge.Add(1)
		return nil, &tooLargeError{size: n, limit: g.maxValue}
	}
	expiry := time.Now().Add(ttl).UnixMilli()
	tags := g.tagSection(refs)
	return appendEnvelope(make([]byte, 0, envelopeHeaderSize+len(tags)+len(payload)), 0, g.codecID, expiry, tags, payload), nil
}

// write stores an encoded value, and keeps v in L1 (boxed, with its tags) unless v is nil.
// The key's stripe is bumped before the Redis write, and again after it, so that a fill
// that read Redis before the write landed is never served: by keepOwn's Renew when v is
// kept, else by an Invalidate, and the next read goes to Redis. Set keeps nothing: the
// caller's value may share memory it changes later (a slice, a pointer), and a copy would
// cost a decode per write, which the next read pays only if there is one. An eager refresh
// keeps its loader's value. A group with L1 writes through the listener either way (see
// ownWriter): Redis then pushes the write to the other instances only.
func (g *groupCore) write(ctx context.Context, st *groupState, key string, env []byte, ttl time.Duration, v any) error {
	h, full := st.hash(key), st.base+key
	g.c.l1.Invalidate(h)
	s := g.snapshot(h)
	w, own := g.c.ownWriter(g.mayFill(s))
	g.c.wrote.bump(h) // before the write: a load in flight that checks after this yields
	_, err := g.c.l2Set(ctx, w, full, h, env, g.l2TTL(ttl), storeCond{})
	if err == nil && own && v != nil {
		g.keepOwn(own, h, s, st, key, v, int64(len(env)-envelopeHeaderSize), ttl, ttl)
	} else {
		g.c.l1.Invalidate(h)
	}
	g.c.flight.Forget(full) // a GetOrLoad from now on does not join a load begun before
	g.c.st.invLocal.Add(1)
	g.c.st.sets.Add(1)
	if err == nil && g.c.mode == BusOnly {
		g.c.publish(ctx, bus.Message{Keys: []string{full}})
	}
	return err
}

// l2TTL is how long Redis keeps a value of TTL ttl: ttl plus the fail-safe margin (both at
// most MaxTTL: the sum cannot wrap).
func (g *groupCore) l2TTL(ttl time.Duration) time.Duration { return ttl + g.c.opts.FailSafeMaxStale }

// Delete removes keys from Redis and makes every instance drop them: the original
// invalidate(prefix, *args).
func (g *Group[T]) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	for _, k := range keys {
		if err := g.check(k); err != nil {
			return err
		}
	}
	st, err := g.resolve(ctx)
	if err != nil {
		return g.fail("delete", keys[0], err)
	}
	full := make([]string, len(keys))
	hashes := make([]uint64, len(keys))
	for i, k := range keys {
		full[i], hashes[i] = st.base+k, st.hash(k)
		g.c.wrote.bump(hashes[i])
		g.c.l1.Invalidate(hashes[i])
	}
	err = g.c.caller.Del(ctx, full)
	for i, h := range hashes {
		g.c.l1.Invalidate(h)
		g.c.flight.Forget(full[i])
	}
	g.c.st.invLocal.Add(uint64(len(keys)))
	g.c.st.deletes.Add(uint64(len(keys)))
	if err != nil {
		g.c.st.l2Errors.Add(1)
		return g.fail("delete", keys[0], err)
	}
	if g.c.mode == BusOnly {
		g.c.publish(ctx, bus.Message{Keys: full})
	}
	return nil
}

// GetOrLoad returns the value of key, calling load on a miss and storing its result with the
// group's TTL (or TTL(d) among opts): the original @cached(prefix, ttl).
//
// Concurrent callers of one key share one load, whether Redis is up or not; a caller whose
// ctx ends stops waiting without cancelling the others (the load's context ends when all
// have gone, or on [Cache.Close]). A load error is returned and not cached; a panic in load
// is returned to every waiter as an error wrapping a *PanicError. When Redis is unreachable
// the loader's value is returned without error, and after Close the loader still runs: the
// service keeps working without its cache. A loaded value larger than the group's
// MaxValueBytes is returned together with an error matching ErrTooLarge, and not cached. A
// loaded value whose key was written (Set, Delete, on any instance) while the loader ran is
// returned but not stored: that write stands, and Stats.LoadsYielded counts it (the
// README's consistency model, "Loads and writes", has the rule and its limits).
func (g *Group[T]) GetOrLoad(ctx context.Context, key string, load func(context.Context) (T, error), opts ...CallOption) (T, error) {
	var zero T
	if g.err != nil {
		return zero, g.err
	}
	if key == "" {
		return zero, g.check(key)
	}
	if load == nil {
		return zero, g.fail("get or load", key, errNilLoader)
	}
	st, rerr := g.resolve(ctx)
	var h uint64
	if rerr == nil && !g.c.isClosed() {
		h = st.hash(key)
		if v, refresh, ok := g.c.l1.GetRefresh(h, g.ns.owner, key); ok {
			if v, ok = g.fromL1(h, v); ok {
				if t, ok := v.(T); ok && v != negative {
					if refresh {
						g.refreshAhead(st, key, load, opts)
					}
					return t, nil
				}
				return zero, g.fail("get or load", key, errCachedMiss)
			}
		}
	}
	co, err := g.callOptions(opts)
	if err != nil {
		return zero, g.fail("get or load", key, err)
	}
	var v any
	switch {
	case rerr == nil:
		// Loads share by Redis key: a caller after a Clear (a new generation) or after this
		// instance's Set or Delete of key (see Forget) never joins a load begun before it.
		var fellBack bool
		v, err, fellBack = g.c.flight.DoWithin(ctx, st.base+key, g.timeouts, func(lctx context.Context) (any, error) {
			return g.load(lctx, st, key, h, load, co)
		})
		if fellBack {
			g.c.st.failSafeServed.Add(1)
			g.c.log.Warn("loader slow: serving a stale value (fail-safe) while it goes on", zap.String("group", g.name))
		}
	case expiredCtx(ctx, rerr):
		return zero, g.fail("get or load", key, rerr)
	default:
		// Redis cannot be asked for the generation: loads share by group and key.
		v, err = g.c.flight.Do(ctx, "\x00"+g.name+"\x00"+key, func(lctx context.Context) (any, error) {
			return g.loadWithoutRedis(lctx, key, load, rerr)
		})
	}
	if err == nil {
		if v == negative { // joined a batch load (GetOrLoadMany) that cached the key as a miss
			return zero, g.fail("get or load", key, errCachedMiss)
		}
		return v.(T), nil
	}
	var le *loaderError
	var pe *PanicError
	switch {
	case errors.Is(err, flight.ErrMissing): // joined a batch load whose loader left the key out
		return zero, g.fail("load", key, ErrNotFound)
	case ctx.Err() == nil && g.c.isClosed() && errors.Is(err, context.Canceled):
		return zero, ErrClosed // Close cancelled the load: the caller cancelled nothing
	case errors.As(err, &le):
		return zero, g.fail("load", key, le.err)
	case errors.As(err, &pe):
		return zero, g.fail("load", key, err)
	case errors.Is(err, flight.ErrTimeout):
		return zero, g.fail("load", key, fmt.Errorf("%w: no answer within %v (WithHardTimeout)", ErrLoadTimeout, g.timeouts.Hard))
	case errors.Is(err, ErrTooLarge) && v != nil:
		return v.(T), g.fail("get or load", key, err)
	}
	return zero, g.fail("get or load", key, err)
}

// loadControl is what a loader says of the value it returns (CacheFor, DoNotCache).
type loadControl struct {
	ttl     atomic.Int64 // > 0: the TTL to store it for
	noCache atomic.Bool
	c       *Cache // for AddTags; nil when nothing will be cached

	mu      sync.Mutex          // guards the tags, which a loader may add from several goroutines
	refs    []tagRef            // AddTags
	keyRefs map[string][]tagRef // AddTagsFor
}

// tagRefs are the tags of the value of key ("" outside batches): the call's, the loader's
// for every value, the loader's for that key.
func (ctl *loadControl) tagRefs(call []tagRef, key string) []tagRef {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	refs := mergeRefs(call, ctl.refs)
	if key != "" {
		refs = mergeRefs(refs, ctl.keyRefs[key])
	}
	return refs
}

type loadControlKey struct{}

// CacheFor, called by a loader with the context it was given, stores the value it returns
// for d instead of the group's TTL (or the call's TTL(d)): for a result the loader knows to
// be volatile, or long-lived. d <= 0 is ignored; d is at most MaxTTL. In a batch loader
// (GetOrLoadMany) it applies to every value the call returns.
func CacheFor(ctx context.Context, d time.Duration) {
	if c, ok := ctx.Value(loadControlKey{}).(*loadControl); ok && d > 0 {
		c.ttl.Store(int64(min(d, MaxTTL)))
	}
}

// DoNotCache, called by a loader with the context it was given, keeps what it returns out of
// both tiers: the caller still gets it, the next call loads again.
func DoNotCache(ctx context.Context) {
	if c, ok := ctx.Value(loadControlKey{}).(*loadControl); ok {
		c.noCache.Store(true)
	}
}

// ttlFor is the TTL to store a loaded value for: the loader's (CacheFor), else the call's;
// spread by WithTTLJitter.
func (g *groupCore) ttlFor(ctl *loadControl, callTTL time.Duration) time.Duration {
	ttl := callTTL
	if d := ctl.ttl.Load(); d > 0 {
		ttl = time.Duration(d)
	}
	return g.jitter(ttl)
}

// jitter spreads ttl over [ttl×(1−f), ttl] with WithTTLJitter(f), so that keys stored
// together do not all expire together.
func (g *groupCore) jitter(ttl time.Duration) time.Duration {
	if g.jitterF == 0 {
		return ttl
	}
	return max(ttl-time.Duration(mrand.Float64()*g.jitterF*float64(ttl)), time.Millisecond)
}

// expiredCtx tells whether err is ctx's own end.
func expiredCtx(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}

// loaderError is an error the caller's loader returned (or its panic), as load returns it to
// GetOrLoad, which reports it as such.
type loaderError struct{ err error }

func (e *loaderError) Error() string { return e.err.Error() }
func (e *loaderError) Unwrap() error { return e.err }

// load is one GetOrLoad miss, shared by its concurrent callers: Redis, else the loader.
func (g *Group[T]) load(ctx context.Context, st *groupState, key string, h uint64, load func(context.Context) (T, error), co callOpts) (any, error) {
	if v, ok := g.c.l1.Get(h, g.ns.owner, key); ok { // filled by a load that just ended
		if v, ok := g.fromL1(h, v); ok {
			if v == negative {
				return nil, errCachedMiss
			}
			return v, nil
		}
	}
	wrote := g.c.wrote.mark(h) // before the read: a write of key made here from now on stands
	s := g.snapshot(h)
	v, cond, err := g.fetchCond(ctx, s, st, key, h, true)
	if err == nil || err == errCachedMiss {
		return v, err
	}
	cond.wrote = wrote
	if !errors.Is(err, ErrNotFound) && ctx.Err() != nil {
		return nil, err
	}
	var stale any // fail-safe's last resort
	if err == errStale {
		stale = v
	} else if sv, ok := g.c.l1.GetStale(h, g.ns.owner, key); ok {
		if sv, ok := staleFromL1(sv); ok && sv != negative {
			stale = sv
		}
	}
	if stale != nil {
		flight.Offer(ctx, stale) // for callers past a soft or hard timeout
	}
	if g.c.opts.LoadLockTTL > 0 && errors.Is(err, ErrNotFound) {
		v, found, release, err := g.waitOrLock(ctx, st, key, h)
		switch {
		case err != nil:
			return nil, err
		case found:
			return v, nil
		}
		defer release()
	}
	// The tags' versions before the loader reads what they stand for.
	callRefs, tagErr := g.c.tagRefs(ctx, co.tags, true)
	g.countLoad()
	loaded, ctl, err := callLoader(ctx, &g.groupCore, g.c, load)
	if tagErr != nil {
		ctl.noCache.Store(true)
		g.c.log.Warn("tags not recorded: the loaded value is not cached", zap.String("group", g.name), zap.Error(tagErr))
	}
	refs := ctl.tagRefs(callRefs, "")
	if err != nil {
		if g.notFoundTTL > 0 && errors.Is(err, ErrNotFound) && !ctl.noCache.Load() {
			g.storeMiss(ctx, s, cond, st, key, h, g.ttlFor(ctl, g.notFoundTTL), refs)
			return nil, &loaderError{err}
		}
		g.countLoadError()
		if stale != nil {
			g.c.st.failSafeServed.Add(1)
			g.c.log.Warn("loader failed: serving a stale value (fail-safe)", zap.String("group", g.name), zap.Error(err))
			return stale, nil
		}
		return nil, &loaderError{err}
	}
	lv := any(loaded) // boxed once, for the codec, L1 and the caller: a struct T is copied at each boxing
	if ctl.noCache.Load() {
		return lv, nil
	}
	ttl := g.ttlFor(ctl, co.ttl)
	env, err := g.encode(lv, ttl, refs)
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return lv, err
		}
		g.c.log.Error("loaded value not cached", zap.String("group", g.name), zap.Error(err))
		return lv, nil
	}
	g.store(ctx, s, cond, st, key, h, env, g.l2TTL(ttl), withTags(lv, refs), int64(len(env)-envelopeHeaderSize), ttl)
	return lv, nil
}

// storeMiss caches that key does not exist, for ttl, with tags refs (see store).
func (g *groupCore) storeMiss(ctx context.Context, s snapshot, cond storeCond, st *groupState, key string, h uint64, ttl time.Duration, refs []tagRef) {
	g.store(ctx, s, cond, st, key, h, g.encodeMiss(ttl, refs), ttl, withTags(negative, refs), 0, ttl)
}

// store keeps what a load of key got (envelope env, for Redis TTL redisTTL; v for L1, of
// payload size and TTL ttl) in Redis under cond, and once Redis has it in L1 (under s, taken
// before the load's read). A write of the key made since the read stands (see storeCond):
// then the loaded value is only returned, and counted in LoadsYielded.
func (g *groupCore) store(ctx context.Context, s snapshot, cond storeCond, st *groupState, key string, h uint64, env []byte, redisTTL time.Duration, v any, size int64, ttl time.Duration) {
	if !cond.storable() {
		return
	}
	if g.c.yielded(h, cond) {
		g.countYield() // written here since the read
		return
	}
	w, own := g.c.ownWriterFor(g.mayFill(s), cond)
	full := st.base + key
	stored, err := g.c.l2Set(ctx, w, full, h, env, redisTTL, cond)
	if err == nil && !stored && cond.kind == condAbsent && cond.unsure {
		// The read could not tell an empty string from no key: store over either.
		cond = emptyOrAbsent(cond)
		w, own = g.c.ownWriterFor(g.mayFill(s), cond)
		stored, err = g.c.l2Set(ctx, w, full, h, env, redisTTL, cond)
	}
	switch {
	case err != nil:
		g.c.log.Debug("loaded value not stored in redis", zap.String("key", full), zap.Error(err))
		return // not confirmed by Redis: not in L1 either
	case !stored:
		g.countYield() // Redis holds a value written since the read
		return
	}
	g.keepOwn(own, h, s, st, key, v, size, ttl, ttl)
}

// loadWithoutRedis serves a GetOrLoad miss while Redis cannot be asked (down, breaker open,
// cache closed): from the loader, else (fail-safe) from the last value this instance held.
func (g *Group[T]) loadWithoutRedis(ctx context.Context, key string, load func(context.Context) (T, error), cause error) (any, error) {
	g.countLoad()
	v, _, err := callLoader(ctx, &g.groupCore, nil, load) // no tags to record: nothing is cached
	if err == nil {
		return v, nil
	}
	g.countLoadError()
	if st := g.ns.lastKnown.Load(); st != nil {
		if sv, ok := g.c.l1.GetStale(st.hash(key), g.ns.owner, key); ok {
			sv, ok = staleFromL1(sv)
			if !ok || sv == negative {
				return nil, &loaderError{err}
			}
			g.c.st.failSafeServed.Add(1)
			g.c.log.Warn("redis and loader failed: serving a stale value (fail-safe)", zap.String("group", g.name),
				zap.Error(err), zap.NamedError("redis", cause))
			return sv, nil
		}
	}
	return nil, &loaderError{err}
}

// callLoader runs the caller's loader, turning a panic into a *PanicError: a panicking loader
// is a failed load (counted, eligible for fail-safe), not a crash. g's cache's Observer, if
// any, is told how long it took. c is g's cache, or nil when nothing loaded is cached.
func callLoader[T any](ctx context.Context, g *groupCore, c *Cache, load func(context.Context) (T, error)) (v T, ctl *loadControl, err error) {
	ctl = &loadControl{c: c}
	if o := g.c.opts.Observer; o != nil {
		start := time.Now()
		defer func() { o.LoadDone(g.name, time.Since(start), err) }() // after the recover below
	}
	defer func() {
		if r := recover(); r != nil {
			var zero T
			v, err = zero, &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	lctx, cancel := flight.UserContext(ctx) // ends when the loader returns
	defer cancel()
	v, err = load(context.WithValue(lctx, loadControlKey{}, ctl))
	return v, ctl, err
}

// countLoad and countLoadError count a loader call, and its failure, in the cache's
// counters and the group's.
func (g *groupCore) countLoad() {
	g.c.st.loads.Add(1)
	g.ns.st.loads.Add(1)
}

// countYield counts a loaded value not stored: its key was written since the load's read.
func (g *groupCore) countYield() {
	g.c.st.loadsYielded.Add(1)
	g.ns.st.loadsYielded.Add(1)
}

func (g *groupCore) countLoadError() {
	g.c.st.loadErrors.Add(1)
	g.ns.st.loadErrors.Add(1)
}

// refreshAhead starts one background load of key that replaces its value before it
// expires (Options.EagerRefresh). Callers keep the current value meanwhile. A write of the
// key that this instance makes or hears of while the loader runs stands: the refresh, whose
// value may predate it, is dropped rather than written over it. (One that lands between that
// check and the refresh's write, a round trip, is overwritten, as with any load.)
func (g *Group[T]) refreshAhead(st *groupState, key string, load func(context.Context) (T, error), opts []CallOption) {
	c := g.c
	co, err := g.callOptions(opts)
	if err != nil {
		return
	}
	full, h := st.base+key, st.hash(key)
	before := c.l1.Snapshot(h) // the value the refresh replaces was current then
	if _, busy := c.refreshing.LoadOrStore(full, struct{}{}); busy {
		return
	}
	started := c.life.Go(func() {
		defer c.refreshing.Delete(full)
		ctx := c.life.Context()
		// One refresh across instances: the first to get here holds a lock for the rest of
		// the entry's refresh window.
		window := max(time.Duration((1-c.opts.EagerRefresh)*float64(co.ttl)), 10*time.Millisecond)
		lock := c.opts.KeyPrefix + "tiercache:refresh:" + strings.TrimPrefix(full, c.opts.KeyPrefix)
		if err := c.caller.Do(ctx, c.caller.B().Set().Key(lock).Value("1").Nx().PxMilliseconds(window.Milliseconds()).Build()).Error(); err != nil {
			return // another instance refreshes, or Redis is unreachable
		}
		callRefs, err := c.tagRefs(ctx, co.tags, true)
		if err != nil {
			c.st.refreshErrors.Add(1)
			return
		}
		v, ctl, err := callLoader(ctx, &g.groupCore, c, load)
		if err == nil && !c.l1.Current(h, before) {
			g.countYield()
			return // written meanwhile (or its stripe invalidated, or L1 flushed): that write stands
		}
		if err == nil && !ctl.noCache.Load() {
			ttl := g.ttlFor(ctl, co.ttl)
			av, refs := any(v), ctl.tagRefs(callRefs, "") // boxed once, for the codec and L1
			var env []byte
			if env, err = g.encode(av, ttl, refs); err == nil {
				err = g.write(ctx, st, key, env, ttl, withTags(av, refs)) // the loader's value: kept
			}
		}
		if err != nil {
			c.st.refreshErrors.Add(1)
			c.log.Warn("eager refresh failed; the entry expires as usual", zap.String("key", full), zap.Error(err))
			return
		}
		c.st.refreshes.Add(1)
	})
	if !started {
		c.refreshing.Delete(full)
	}
}
