package tiered

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/synspirit/tiercache/bus"
)

// Group is a typed namespace of the cache: the original DataCache(prefix, ttl). Its keys live
// in Redis as <KeyPrefix><name>:<key> (<KeyPrefix><name>@<n>:<key> after n Clears), with
// the group's TTL. Values served from L1 are shared
// between callers: treat them as read-only (copy a slice or map before changing it).
type Group[T any] struct {
	groupCore
}

// groupCore is the part of a Group that does not depend on T. Its address identifies the
// group in L1 entries.
type groupCore struct {
	c          *Cache
	name       string
	ttl        time.Duration
	codec      Codec
	codecID    byte
	useL1      bool
	l1MaxEntry int64
	genKey     string                     // <KeyPrefix>tiercache:gen:<name>
	state      atomic.Pointer[groupState] // the current generation, or a stale marker
	lastKnown  atomic.Pointer[groupState] // the last generation read, for fail-safe without Redis
	err        error                      // a bad name or option: every call returns it
}

// groupState is what a group's keys depend on: its generation. A state without known set is
// a marker that the generation must be re-read from Redis; its pointer identity is its
// version, so a read that raced an invalidation is not stored (compare-and-swap).
type groupState struct {
	known  bool
	gen    uint64
	base   string        // <KeyPrefix><name>: or <KeyPrefix><name>@<gen>:
	digest xxhash.Digest // of base, continued with the key for the L1 hash
}

func newGroupState(keyPrefix, name string, gen uint64) *groupState {
	st := &groupState{known: true, gen: gen, base: keyPrefix + name + ":"}
	if gen > 0 {
		st.base = keyPrefix + name + "@" + strconv.FormatUint(gen, 10) + ":"
	}
	st.digest.Reset()
	_, _ = st.digest.WriteString(st.base)
	return st
}

func (st *groupState) hash(key string) uint64 {
	d := st.digest
	_, _ = d.WriteString(key)
	return d.Sum64()
}

// GroupOption configures a group.
type GroupOption func(*groupCore)

// WithCodec sets the group's codec (default: the cache's, JSON unless set).
func WithCodec(codec Codec) GroupOption {
	return func(g *groupCore) {
		if codec == nil {
			g.err = errors.New("tiered: WithCodec(nil)")
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
			g.err = fmt.Errorf("tiered: WithL1MaxEntryBytes(%d): want > 0", n)
			return
		}
		g.l1MaxEntry = n
	}
}

// NewGroup returns the group name of c with L2 TTL ttl (0: the cache's DefaultTTL). A name
// is non-empty, without spaces or control characters, e.g. "data:articles:list". A bad name
// or option does not panic: every call on the group returns the error.
func NewGroup[T any](c *Cache, name string, ttl time.Duration, opts ...GroupOption) *Group[T] {
	g := &Group[T]{groupCore{c: c, name: name, ttl: ttl, useL1: true}}
	g.err = validateGroupName(name)
	if c == nil {
		g.err = errors.New("tiered: NewGroup with a nil *Cache")
		return g
	}
	if ttl < 0 {
		g.err = fmt.Errorf("tiered: group %q: negative ttl %v", name, ttl)
	}
	if g.ttl == 0 {
		g.ttl = c.opts.DefaultTTL
	}
	g.codec = c.opts.Codec
	for _, o := range opts {
		o(&g.groupCore)
	}
	g.codecID = codecID(g.codec)
	g.genKey = c.genPrefix + name
	g.state.Store(&groupState{})
	if g.err == nil {
		c.register(&g.groupCore)
	}
	return g
}

func validateGroupName(name string) error {
	if name == "" {
		return errors.New("tiered: empty group name")
	}
	if strings.IndexFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '@' }) >= 0 {
		return fmt.Errorf("tiered: group name %q has spaces, control characters or '@'", name)
	}
	return nil
}

// Name is the group's name.
func (g *Group[T]) Name() string { return g.name }

// TTL is the group's L2 TTL.
func (g *Group[T]) TTL() time.Duration { return g.ttl }

// Key is the original make_key(prefix, *args): a stable hash of args, identical across
// processes, machines and Go versions. See the package doc for the encoding. It returns ""
// only for an argument that cannot be encoded (a JSON error), which every call then rejects.
func (g *Group[T]) Key(args ...any) string {
	k, err := makeKey(args)
	if err != nil {
		g.c.log.Error("unusable key argument", zap.String("group", g.name), zap.Error(err))
		return ""
	}
	return k
}

// RedisKey is the Redis key under which key is stored now (it changes with Clear).
func (g *Group[T]) RedisKey(ctx context.Context, key string) (string, error) {
	st, err := g.resolve(ctx)
	if err != nil {
		return "", err
	}
	return st.base + key, nil
}

// resolve returns the group's current state, reading its generation from Redis when it is
// not known (first use, after a Clear anywhere, after a flush).
func (g *groupCore) resolve(ctx context.Context) (*groupState, error) {
	cur := g.state.Load()
	if cur.known {
		return cur, nil
	}
	s, err := g.c.do(ctx, g.c.redis.B().Get().Key(g.genKey).Build()).ToString()
	var gen uint64
	switch {
	case err == nil:
		if gen, err = parseGen(s); err != nil {
			return nil, fmt.Errorf("tiered: group %q: generation key %s holds %q", g.name, g.genKey, s)
		}
	case rueidis.IsRedisNil(err):
	default:
		return nil, redisErr("group generation", err)
	}
	st := newGroupState(g.c.opts.KeyPrefix, g.name, gen)
	g.state.CompareAndSwap(cur, st) // lost to an invalidation: use st once, re-read next time
	g.lastKnown.Store(st)
	return st, nil
}

// Clear drops every entry of the group, on every instance, in O(1): it moves the group to
// a new generation, so the old keys are no longer read and expire by themselves. No KEYS,
// no SCAN.
func (g *Group[T]) Clear(ctx context.Context) error {
	if g.err != nil {
		return g.err
	}
	if g.c.isClosed() {
		return ErrClosed
	}
	if err := g.c.do(ctx, g.c.redis.B().Incr().Key(g.genKey).Build()).Error(); err != nil {
		return redisErr("clear", err)
	}
	g.c.invalidateGroupGen(g.name)
	g.c.publish(ctx, bus.Message{Groups: []string{g.name}})
	return nil
}

func (g *groupCore) check(key string) error {
	if g.err != nil {
		return g.err
	}
	if key == "" {
		return fmt.Errorf("tiered: group %q: empty key", g.name)
	}
	if g.c.isClosed() {
		return ErrClosed
	}
	return nil
}

// Get returns the value of key: from L1 if it holds a current one, else from Redis (and then
// keeps it in L1). It returns an error matching ErrNotFound on a miss, ErrUnavailable when
// Redis cannot be reached.
func (g *Group[T]) Get(ctx context.Context, key string) (T, error) {
	var zero T
	if err := g.check(key); err != nil {
		return zero, err
	}
	st, err := g.resolve(ctx)
	if err != nil {
		return zero, err
	}
	h := st.hash(key)
	if v, ok := g.c.l1.get(h, &g.groupCore, key); ok {
		return v.(T), nil
	}
	v, err := g.fetch(ctx, st, key, h)
	if err != nil {
		return zero, err
	}
	return v.(T), nil
}

// l2TTL is how long Redis keeps a value: its TTL plus the fail-safe margin.
func (g *groupCore) l2TTL() time.Duration { return g.ttl + g.c.opts.FailSafeMaxStale }

// fetch reads key from Redis and fills L1. A value that cannot be decoded is a miss.
func (g *Group[T]) fetch(ctx context.Context, st *groupState, key string, h uint64) (any, error) {
	s := g.c.l1.snapshot(h)
	raw, err := g.c.l2Get(ctx, st.base+key)
	if err != nil {
		return nil, err
	}
	env, err := decodeEnvelope(raw)
	if err == nil && env.codec != g.codecID {
		err = fmt.Errorf("%w: codec %d, group %q uses %d", errForeignValue, env.codec, g.name, g.codecID)
	}
	var v T
	if err == nil {
		err = g.codec.Unmarshal(env.payload, &v)
	}
	if err != nil {
		g.c.st.decodeErrors.Add(1)
		g.c.log.Warn("undecodable value in redis: treated as a miss", zap.String("key", st.base+key), zap.Error(err))
		return nil, fmt.Errorf("tiered: %w (undecodable value)", ErrNotFound)
	}
	ttl := g.ttl
	if env.expiryMs > 0 {
		ttl = time.Until(time.UnixMilli(env.expiryMs))
	}
	if ttl <= 0 {
		// Past its TTL: a miss. Within the fail-safe bound, with the value as a last resort.
		if -ttl < g.c.opts.FailSafeMaxStale {
			return v, errStale
		}
		return nil, fmt.Errorf("tiered: %w (expired)", ErrNotFound)
	}
	if g.useL1 && (g.l1MaxEntry == 0 || int64(len(env.payload)) <= g.l1MaxEntry) {
		g.c.l1.fill(h, s, &g.groupCore, key, v, int64(len(env.payload)), ttl)
	}
	return v, nil
}

// errStale is fetch's answer for a value past its TTL (kept in Redis for fail-safe).
var errStale = fmt.Errorf("tiered: %w (stale)", ErrNotFound)

// Set stores v under key in Redis with the group's TTL, and makes every instance drop what
// it held for key. After Set returns, Get on this instance returns v (or something newer).
func (g *Group[T]) Set(ctx context.Context, key string, v T) error {
	if err := g.check(key); err != nil {
		return err
	}
	payload, err := g.encode(v)
	if err != nil {
		return err
	}
	st, err := g.resolve(ctx)
	if err != nil {
		return err
	}
	return g.write(ctx, st, key, payload)
}

func (g *Group[T]) encode(v T) ([]byte, error) {
	payload, err := g.codec.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("tiered: group %q: encoding value: %w", g.name, err)
	}
	expiry := time.Now().Add(g.ttl).UnixMilli()
	return appendEnvelope(make([]byte, 0, envelopeHeaderSize+len(payload)), 0, g.codecID, expiry, payload), nil
}

// write stores an encoded value. The key's stripe is bumped before and after the Redis
// write: a fill that read Redis before the write landed is never served, and this
// instance's next read goes to Redis, which has the value in the order Redis applied the
// writes (filling L1 here from the writer's copy could serve the older of two racing
// writes).
func (g *Group[T]) write(ctx context.Context, st *groupState, key string, env []byte) error {
	h, full := st.hash(key), st.base+key
	g.c.l1.invalidate(h)
	err := g.c.l2Set(ctx, full, env, g.l2TTL())
	g.c.l1.invalidate(h)
	g.c.st.invLocal.Add(1)
	g.c.st.sets.Add(1)
	if err == nil && g.c.mode == BusOnly {
		g.c.publish(ctx, bus.Message{Keys: []string{full}})
	}
	return err
}

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
		return err
	}
	full := make([]string, len(keys))
	hashes := make([]uint64, len(keys))
	for i, k := range keys {
		full[i], hashes[i] = st.base+k, st.hash(k)
		g.c.l1.invalidate(hashes[i])
	}
	err = g.c.l2Del(ctx, full)
	for _, h := range hashes {
		g.c.l1.invalidate(h)
	}
	g.c.st.invLocal.Add(uint64(len(keys)))
	g.c.st.deletes.Add(uint64(len(keys)))
	if err == nil && g.c.mode == BusOnly {
		g.c.publish(ctx, bus.Message{Keys: full})
	}
	return err
}

// GetOrLoad returns the value of key, calling load on a miss and storing its result: the
// original @cached(prefix, ttl). Concurrent callers of one key share one load; a caller
// whose ctx ends stops waiting without cancelling the others (the load's context ends when
// all have gone). A load error is returned and not cached; a panic in load is returned to
// every waiter as a *PanicError. When Redis is unreachable the loader's value is returned
// without error: the service keeps working without its cache.
func (g *Group[T]) GetOrLoad(ctx context.Context, key string, load func(context.Context) (T, error)) (T, error) {
	var zero T
	if err := g.check(key); err != nil {
		if errors.Is(err, ErrClosed) {
			return load(ctx)
		}
		return zero, err
	}
	st, err := g.resolve(ctx)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			return g.loadWithoutRedis(ctx, key, load)
		}
		return zero, err
	}
	h := st.hash(key)
	if e, ok := g.c.l1.getEntry(h, &g.groupCore, key); ok {
		if e.refreshAt != 0 && g.c.l1.now() > e.refreshAt {
			g.refreshAhead(st, key, load)
		}
		return e.value.(T), nil
	}
	v, err := g.c.flight.do(ctx, g.c.closeCtx, g.c.spawn, st.base+key, func(lctx context.Context) (any, error) {
		return g.load(lctx, st, key, h, load)
	})
	if err != nil {
		return zero, err
	}
	return v.(T), nil
}

// refreshAhead starts one background load of key that replaces its value before it
// expires (Options.EagerRefresh). Callers keep the current value meanwhile.
func (g *Group[T]) refreshAhead(st *groupState, key string, load func(context.Context) (T, error)) {
	c := g.c
	full := st.base + key
	if _, busy := c.refreshing.LoadOrStore(full, struct{}{}); busy {
		return
	}
	started := c.spawn(func() {
		defer c.refreshing.Delete(full)
		ctx := c.closeCtx
		// One refresh across instances: the first to get here holds a lock for the rest of
		// the entry's refresh window.
		window := max(time.Duration((1-c.opts.EagerRefresh)*float64(g.ttl)), 10*time.Millisecond)
		lock := c.opts.KeyPrefix + "tiercache:refresh:" + strings.TrimPrefix(full, c.opts.KeyPrefix)
		if err := c.do(ctx, c.redis.B().Set().Key(lock).Value("1").Nx().PxMilliseconds(window.Milliseconds()).Build()).Error(); err != nil {
			return // another instance refreshes, or Redis is unreachable
		}
		v, err := load(ctx)
		if err == nil {
			var env []byte
			if env, err = g.encode(v); err == nil {
				err = g.write(ctx, st, key, env)
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

// loadWithoutRedis serves a GetOrLoad while the group's generation cannot be read: from the
// loader, else (fail-safe) from the last value this instance held.
func (g *Group[T]) loadWithoutRedis(ctx context.Context, key string, load func(context.Context) (T, error)) (T, error) {
	v, err := load(ctx)
	if err == nil {
		return v, nil
	}
	if st := g.lastKnown.Load(); st != nil {
		if sv, ok := g.c.l1.getStale(st.hash(key), &g.groupCore, key); ok {
			g.c.st.failSafeServed.Add(1)
			g.c.log.Warn("redis and loader failed: serving a stale value (fail-safe)", zap.String("group", g.name), zap.Error(err))
			return sv.(T), nil
		}
	}
	return v, err
}

func (g *Group[T]) load(ctx context.Context, st *groupState, key string, h uint64, load func(context.Context) (T, error)) (any, error) {
	v, err := g.fetch(ctx, st, key, h)
	if err == nil {
		return v, nil
	}
	var stale any // fail-safe's last resort
	if err == errStale {
		stale = v
	} else if sv, ok := g.c.l1.getStale(h, &g.groupCore, key); ok {
		stale = sv
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
	s := g.c.l1.snapshot(h)
	g.c.st.loads.Add(1)
	loaded, err := load(ctx)
	if err != nil {
		g.c.st.loadErrors.Add(1)
		if stale != nil {
			g.c.st.failSafeServed.Add(1)
			g.c.log.Warn("loader failed: serving a stale value (fail-safe)", zap.String("group", g.name), zap.Error(err))
			return stale, nil
		}
		return nil, err
	}
	env, err := g.encode(loaded)
	if err != nil {
		g.c.log.Error("loaded value not cached", zap.String("group", g.name), zap.Error(err))
		return loaded, nil
	}
	if err := g.c.l2Set(ctx, st.base+key, env, g.l2TTL()); err != nil {
		g.c.log.Debug("loaded value not stored in redis", zap.String("key", st.base+key), zap.Error(err))
		return loaded, nil // not confirmed by Redis: not in L1 either
	}
	if g.useL1 && (g.l1MaxEntry == 0 || int64(len(env)-envelopeHeaderSize) <= g.l1MaxEntry) {
		g.c.l1.fill(h, s, &g.groupCore, key, loaded, int64(len(env)-envelopeHeaderSize), g.ttl)
	}
	return loaded, nil
}
