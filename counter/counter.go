package counter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/synspirit/tiercache/internal/flight"
	"github.com/synspirit/tiercache/internal/lifetime"
	"github.com/synspirit/tiercache/internal/rcall"
	"github.com/synspirit/tiercache/tiered"
)

// Defaults, each tied to its Options field.
const (
	// DefaultCacheTTL is the original design's counter TTL, one minute. Pass it as Options.TTL
	// for cache mode; the zero TTL means persistent counters.
	DefaultCacheTTL = time.Minute
	// DefaultTimeout is the deadline of each Redis call when Options.Timeout is 0.
	DefaultTimeout = 100 * time.Millisecond
)

// Options configures Counters. The zero value is usable: no key prefix, persistent counters,
// floor 0, a 100 ms deadline per call.
type Options struct {
	// KeyPrefix goes in front of every Redis key, e.g. "synspirit:" (the original's
	// CACHE_KEY_PREFIX). It is used as given, unescaped.
	KeyPrefix string

	// TTL selects the mode. 0 (the zero value) makes counters persistent: Redis holds the
	// truth and Increment creates a missing counter. A TTL > 0 selects cache mode: counters
	// mirror a database, GetOrLoad seeds them with this TTL, increments keep the remaining TTL,
	// and incrementing a missing counter is ErrNotFound. DefaultCacheTTL is the original
	// design's one minute. Negative is invalid; a fraction of a millisecond is rounded up.
	TTL time.Duration

	// Floor is the lowest value a decrement can leave: a decrement that would cross it stops
	// there, and a counter already below it (through Set or a load) is left unchanged. The zero
	// value is floor 0, so likes never go negative. Increments are not limited by the floor.
	Floor int64
	// NoFloor removes the floor (Floor is then ignored): decrements stop only at ErrOverflow.
	NoFloor bool

	// Timeout is the deadline of each Redis call, applied on top of the caller's context;
	// 0 means DefaultTimeout (on a tiered.Cache's client: the cache's Timeout) and a negative
	// value means none (the caller's context only). A timeout reaching Redis is
	// ErrUnavailable; the caller's own context ending is its error (context.Canceled or
	// context.DeadlineExceeded), never ErrUnavailable. A call whose context cannot be
	// cancelled (context.Background) shares one deadline with the calls that start in the
	// same window of Timeout/16 (at least 100 µs) rather than start a timer of its own: it gets
	// at least Timeout and at most one window more. A cancellable context gets its own.
	Timeout time.Duration
}

// Counters reads and writes counters in Redis. It is safe for concurrent use and has
// nothing to close: on a tiered.Cache's client it stops with the cache.
type Counters struct {
	caller *rcall.Caller // every Redis call: deadline, breaker, error classification
	prefix string
	ttlMs  int64  // Options.TTL rounded up to ms; 0 in persistent mode
	floor  string // Options.Floor in decimal; "" with NoFloor
	err    error  // a bad Options, returned by every call

	loads *flight.Group[int64] // GetOrLoad loads in flight, by Redis key
	st    stats                // see Stats
}

// FromCache returns Counters on c's Redis, with c's KeyPrefix (unless opts sets one) and
// Timeout (unless opts sets one), sharing c's circuit breaker: while c's Redis is down,
// counters fail at once with ErrUnavailable, and after c.Close with ErrClosed.
func FromCache(c *tiered.Cache, opts Options) *Counters {
	if c == nil {
		return &Counters{err: fmt.Errorf("%w: nil *tiered.Cache", ErrInvalidOptions)}
	}
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = c.KeyPrefix()
	}
	return New(c.Redis(), opts)
}

// New returns Counters over client. On a tiered.Cache's client (Cache.Redis) they share
// the cache's circuit breaker and stop with it (see FromCache); on another client they have
// a breaker of their own (tiered.DefaultBreakerThreshold consecutive failures open it for
// tiered.DefaultBreakerCooldown). Bad options (a nil client, a negative TTL) do not panic:
// [Counters.Err] reports them, and every call returns the error, wrapping ErrInvalidOptions.
func New(client rueidis.Client, opts Options) *Counters {
	c := &Counters{prefix: opts.KeyPrefix}
	switch {
	case client == nil:
		c.err = fmt.Errorf("%w: nil rueidis client", ErrInvalidOptions)
		return c
	case opts.TTL < 0:
		c.err = fmt.Errorf("%w: negative TTL %v", ErrInvalidOptions, opts.TTL)
		return c
	case opts.TTL > tiered.MaxTTL:
		c.err = fmt.Errorf("%w: TTL %v is longer than tiered.MaxTTL (%v)", ErrInvalidOptions, opts.TTL, tiered.MaxTTL)
		return c
	case opts.Timeout > tiered.MaxTTL:
		c.err = fmt.Errorf("%w: Timeout %v is longer than tiered.MaxTTL (%v)", ErrInvalidOptions, opts.Timeout, tiered.MaxTTL)
		return c
	}
	if opts.TTL > 0 {
		c.ttlMs = ceilMillis(opts.TTL)
	}
	if !opts.NoFloor {
		c.floor = strconv.FormatInt(opts.Floor, 10)
	}
	call := rcall.Options{Timeout: opts.Timeout, Unavailable: ErrUnavailable, Closed: ErrClosed}
	if cache := rcall.CallerOf(client); cache != nil {
		c.caller = cache.With(call)
	} else {
		if call.Timeout == 0 {
			call.Timeout = DefaultTimeout
		}
		call.Breaker = rcall.NewBreaker(rcall.BreakerOptions{
			Threshold: tiered.DefaultBreakerThreshold, MinSpan: rcall.DefaultMinFailureSpan, Cooldown: tiered.DefaultBreakerCooldown,
		})
		call.Life = lifetime.New() // never closed: loads end with their callers
		c.caller = rcall.New(client, call)
	}
	c.loads = flight.New[int64](c.caller.Life())
	return c
}

// Err is the error every call returns when New was given bad Options (wrapping
// ErrInvalidOptions); nil for usable Counters.
func (c *Counters) Err() error { return c.err }

// Increment adds delta to the counter and returns its new value, in one atomic round trip.
// A negative delta is a decrement, subject to the floor. In cache mode a missing (expired)
// counter is not created: the result is ErrNotFound, and the caller should reload it.
// The counter's TTL is left as it is.
func (c *Counters) Increment(ctx context.Context, key Key, delta int64) (int64, error) {
	return c.add(ctx, "increment", key, delta)
}

// Decrement subtracts delta from the counter and returns its new value; it is
// Increment(ctx, key, -delta), floor included: the result never goes below the floor.
func (c *Counters) Decrement(ctx context.Context, key Key, delta int64) (int64, error) {
	if delta == math.MinInt64 {
		return 0, &keyError{op: "decrement", key: key, kind: ErrOverflow}
	}
	return c.add(ctx, "decrement", key, -delta)
}

func (c *Counters) add(ctx context.Context, op string, key Key, delta int64) (int64, error) {
	rk, err := c.redisKey(key)
	if err != nil {
		return 0, err
	}
	floor := ""
	if delta < 0 {
		floor = c.floor
	}
	var res rueidis.RedisResult
	if c.ttlMs == 0 && floor == "" {
		// Persistent mode without a floor to enforce: INCRBY alone is the whole operation,
		// and costs Redis a fraction of a script call.
		res = c.caller.Do(ctx, c.caller.B().Incrby().Key(rk).Increment(delta).Build())
	} else {
		create := "1" // persistent mode: a missing counter starts from 0
		if c.ttlMs > 0 {
			create = "0"
		}
		res = c.caller.Exec(ctx, incrementScript, []string{rk}, []string{strconv.FormatInt(delta, 10), create, floor})
	}
	c.st.writes.Add(1)
	n, err := res.AsInt64()
	if err != nil {
		err = replyError(op, key, res.Error(), err)
		c.st.failed(err)
		return 0, err
	}
	return n, nil
}

// Get returns the counter's value, or def when the counter does not exist (and, with the error,
// when the read fails). It never calls a loader and never creates the counter: see GetOrLoad
// for cache mode.
func (c *Counters) Get(ctx context.Context, key Key, def int64) (int64, error) {
	n, ok, err := c.get(ctx, key)
	if err != nil || !ok {
		return def, err
	}
	return n, nil
}

func (c *Counters) get(ctx context.Context, key Key) (n int64, found bool, err error) {
	rk, err := c.redisKey(key)
	if err != nil {
		return 0, false, err
	}
	res := c.caller.Do(ctx, c.caller.B().Get().Key(rk).Build())
	c.st.reads.Add(1)
	if rueidis.IsRedisNil(res.Error()) {
		c.st.misses.Add(1)
		return 0, false, nil
	}
	n, err = res.AsInt64()
	if err != nil {
		err = replyError("get", key, res.Error(), err)
		c.st.failed(err)
		return 0, false, err
	}
	return n, true, nil
}

// GetOrLoad returns the counter's value; on a miss it calls load, seeds the counter with the
// result — SET NX, with Options.TTL in cache mode — and returns the value Redis holds
// afterwards, which is the loaded one unless another caller seeded first.
//
// Concurrent misses of one counter share one load. A caller whose ctx ends stops waiting;
// the load's context (which keeps ctx's values, not its deadline) ends when every caller has
// left, or when the cache closes (counters built on a cache). A panic in load is returned to
// every caller as an error wrapping a *tiered.PanicError.
//
// If reading Redis fails, load is not called and the error is returned. If the seed fails
// after a successful load, GetOrLoad returns the loaded value together with the seed's error
// (wrapping ErrUnavailable when Redis could not be reached), so a caller may still show it.
func (c *Counters) GetOrLoad(ctx context.Context, key Key, load func(context.Context) (int64, error)) (int64, error) {
	if load == nil {
		return 0, &keyError{op: "get or load", key: key, kind: ErrInvalidOptions, detail: errors.New("nil loader")}
	}
	n, ok, err := c.get(ctx, key)
	if err != nil || ok {
		return n, err
	}
	rk, err := c.redisKey(key)
	if err != nil {
		return 0, err
	}

	// The seed is safe either way; the database query is what sharing saves.
	n, err = c.loads.Do(ctx, rk, func(lctx context.Context) (int64, error) {
		return c.loadAndSeed(lctx, key, rk, load)
	})
	var pe *tiered.PanicError
	switch {
	case err == nil:
	case ctx.Err() == nil && c.caller.Closed() && errors.Is(err, context.Canceled):
		return 0, &keyError{op: "load", key: key, kind: ErrClosed} // the cache closed, the caller cancelled nothing
	case errors.As(err, &pe):
		return 0, &keyError{op: "load", key: key, detail: err}
	}
	return n, err
}

func (c *Counters) loadAndSeed(ctx context.Context, key Key, rk string, load func(context.Context) (int64, error)) (int64, error) {
	// A caller that missed just before another load seeded the counter arrives here after
	// that load has finished: look again rather than query the database again.
	if n, ok, err := c.get(ctx, key); err == nil && ok {
		return n, nil
	}
	c.st.loads.Add(1)
	lctx, cancel := flight.UserContext(ctx) // ends when the loader returns
	loaded, err := load(lctx)
	cancel()
	if err != nil {
		c.st.loadErrors.Add(1)
		return 0, &keyError{op: "load", key: key, detail: err}
	}
	res := c.caller.Exec(ctx, seedScript, []string{rk}, []string{strconv.FormatInt(loaded, 10), strconv.FormatInt(c.ttlMs, 10)})
	n, err := res.AsInt64()
	if err != nil {
		err = replyError("seed", key, res.Error(), err)
		c.st.failed(err)
		return loaded, err
	}
	return n, nil
}

// Set stores value in the counter, replacing whatever the key held. ttl > 0 sets that TTL;
// ttl == 0 means the Counters' TTL: Options.TTL in cache mode, none (persistent) otherwise.
// The floor does not apply: Set stores what it is given. A negative ttl is an error.
func (c *Counters) Set(ctx context.Context, key Key, value int64, ttl time.Duration) error {
	rk, err := c.redisKey(key)
	if err != nil {
		return err
	}
	if ttl < 0 || ttl > tiered.MaxTTL {
		return &keyError{op: "set", key: key, kind: ErrInvalidOptions, detail: fmt.Errorf("ttl %v is negative or longer than tiered.MaxTTL", ttl)}
	}
	ms := c.ttlMs
	if ttl > 0 {
		ms = ceilMillis(ttl)
	}
	set := c.caller.B().Set().Key(rk).Value(strconv.FormatInt(value, 10))
	var cmd rueidis.Completed
	if ms > 0 {
		cmd = set.PxMilliseconds(ms).Build()
	} else {
		cmd = set.Build()
	}
	c.st.writes.Add(1)
	if err := c.caller.Do(ctx, cmd).Error(); err != nil {
		err = classify("set", key, err)
		c.st.failed(err)
		return err
	}
	return nil
}

// Delete removes the counters; missing ones are not an error. In a cluster the keys may live on
// several nodes: there is one round trip per node, and the call is atomic per node only.
func (c *Counters) Delete(ctx context.Context, keys ...Key) error {
	rks, err := c.redisKeys(keys)
	if err != nil || len(rks) == 0 {
		return err
	}
	c.st.writes.Add(uint64(len(rks)))
	if err := c.caller.Del(ctx, rks); err != nil {
		err = classify("delete", keys[0], err)
		c.st.failed(err)
		return err
	}
	return nil
}

// GetMany reads many counters — a page of 20 to 100 items — in one round trip per Redis node
// (MGET, grouped by hash slot in a cluster). Missing counters are absent from the map; so are
// keys holding a non-string type, which MGET reports as missing. A string that is not an
// integer fails the call with ErrNotCounter.
func (c *Counters) GetMany(ctx context.Context, keys []Key) (map[Key]int64, error) {
	rks, err := c.redisKeys(keys)
	if err != nil {
		return nil, err
	}
	out := make(map[Key]int64, len(keys))
	if len(rks) == 0 {
		return out, nil
	}
	vals, err := c.caller.MGet(ctx, rks)
	c.st.reads.Add(uint64(len(rks)))
	if err != nil {
		err = classify("get many", keys[0], err)
		c.st.failed(err)
		return nil, err
	}
	for i := range vals {
		if err := collect(out, keys[i], &vals[i]); err != nil {
			c.st.failed(err)
			return nil, err
		}
	}
	c.st.misses.Add(uint64(len(rks) - len(out)))
	return out, nil
}

// collect adds one MGET value to out; nil (missing, or not a string) is skipped.
func collect(out map[Key]int64, key Key, v *rueidis.RedisMessage) error {
	if v.IsNil() {
		return nil
	}
	n, err := v.AsInt64()
	if err != nil {
		return notCounter("get many", key, err)
	}
	out[key] = n
	return nil
}

// RedisKey returns the Redis key of a counter, e.g. "synspirit:count:article:123:likes", for
// inspection with other tools. It is ErrBadKey for a key with an empty part.
func (c *Counters) RedisKey(key Key) (string, error) {
	return redisKey(c.prefix, key)
}

func (c *Counters) redisKey(key Key) (string, error) {
	if c.err != nil {
		return "", c.err
	}
	return redisKey(c.prefix, key)
}

// redisKeys maps keys to their Redis keys, all sliced out of one string: one allocation for a
// whole page instead of one per key.
func (c *Counters) redisKeys(keys []Key) ([]string, error) {
	if c.err != nil {
		return nil, c.err
	}
	size := 0
	for _, k := range keys {
		if k.Target == "" || k.ID == "" || k.Counter == "" {
			_, err := redisKey(c.prefix, k)
			return nil, err
		}
		size += len(c.prefix) + len(namespace) + escapedLen(k.Target) + escapedLen(k.ID) + escapedLen(k.Counter) + 2
	}
	var b strings.Builder
	b.Grow(size)
	ends := make([]int, len(keys))
	for i, k := range keys {
		b.WriteString(c.prefix)
		b.WriteString(namespace)
		appendParts(&b, k)
		ends[i] = b.Len()
	}
	all := b.String()
	rks := make([]string, len(keys))
	start := 0
	for i, end := range ends {
		rks[i] = all[start:end]
		start = end
	}
	return rks, nil
}

// replyError reports why a reply did not give an int64: replyErr is the call's own error
// (network or Redis error reply), parseErr the conversion's.
func replyError(op string, key Key, replyErr, parseErr error) error {
	if replyErr != nil {
		return classify(op, key, replyErr)
	}
	return notCounter(op, key, parseErr)
}

func ceilMillis(d time.Duration) int64 {
	ms := d / time.Millisecond
	if d%time.Millisecond != 0 {
		ms++
	}
	return int64(ms)
}
