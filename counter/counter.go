package counter

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
	"golang.org/x/sync/singleflight"

	"github.com/synspirit/tiercache/internal/deadline"
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
	// 0 means DefaultTimeout and a negative value means none (the caller's context only). A
	// timeout reaching Redis is ErrUnavailable. A call whose context cannot be cancelled
	// (context.Background) shares one deadline with the calls that start in the same window
	// of Timeout/16 (at least 100 µs) rather than start a timer of its own: it gets at least
	// Timeout and at most one window more. A cancellable context gets its own.
	Timeout time.Duration
}

// Counters reads and writes counters in Redis. It is safe for concurrent use, holds no
// goroutines and nothing to close; the rueidis client belongs to the caller.
type Counters struct {
	client rueidis.Client
	prefix string
	ttlMs  int64            // Options.TTL rounded up to ms; 0 in persistent mode
	floor  string           // Options.Floor in decimal; "" with NoFloor
	bounds *deadline.Bounds // Options.Timeout per call
	err    error            // a bad Options, returned by every call

	loads singleflight.Group // GetOrLoad loads in flight, by Redis key
}

// New returns Counters over client. Bad options (a nil client, a negative TTL) do not panic:
// every call then returns an error wrapping ErrInvalidOptions.
func New(client rueidis.Client, opts Options) *Counters {
	c := &Counters{client: client, prefix: opts.KeyPrefix}
	switch {
	case client == nil:
		c.err = fmt.Errorf("%w: nil rueidis client", ErrInvalidOptions)
	case opts.TTL < 0:
		c.err = fmt.Errorf("%w: negative TTL %v", ErrInvalidOptions, opts.TTL)
	}
	if opts.TTL > 0 {
		c.ttlMs = ceilMillis(opts.TTL)
	}
	if !opts.NoFloor {
		c.floor = strconv.FormatInt(opts.Floor, 10)
	}
	switch timeout := opts.Timeout; {
	case timeout == 0:
		c.bounds = deadline.New(DefaultTimeout)
	case timeout > 0:
		c.bounds = deadline.New(timeout)
	}
	return c
}

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
		return 0, fmt.Errorf("counter: decrement %s by %d: %w", key, delta, ErrOverflow)
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
	cctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var res rueidis.RedisResult
	if c.ttlMs == 0 && floor == "" {
		// Persistent mode without a floor to enforce: INCRBY alone is the whole operation,
		// and costs Redis a fraction of a script call.
		res = c.client.Do(cctx, c.client.B().Incrby().Key(rk).Increment(delta).Build().Pin()) // pinned: see tiered.Cache.do
	} else {
		create := "1" // persistent mode: a missing counter starts from 0
		if c.ttlMs > 0 {
			create = "0"
		}
		res = incrementScript.Exec(cctx, c.client, []string{rk}, []string{strconv.FormatInt(delta, 10), create, floor})
	}
	n, err := res.AsInt64()
	if err != nil {
		return 0, c.replyError(ctx, op, key, res.Error(), err)
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
	cctx, cancel := c.withTimeout(ctx)
	defer cancel()
	res := c.client.Do(cctx, c.client.B().Get().Key(rk).Build().Pin())
	if rueidis.IsRedisNil(res.Error()) {
		return 0, false, nil
	}
	n, err = res.AsInt64()
	if err != nil {
		return 0, false, c.replyError(ctx, "get", key, res.Error(), err)
	}
	return n, true, nil
}

// GetOrLoad returns the counter's value; on a miss it calls load (with the caller's context,
// not the Redis deadline), seeds the counter with the result — SET NX, with Options.TTL in
// cache mode — and returns the value Redis holds afterwards, which is the loaded one unless
// another caller seeded first.
//
// If reading Redis fails, load is not called and the error is returned. If the seed fails
// after a successful load, GetOrLoad returns the loaded value together with the seed's error
// (wrapping ErrUnavailable when Redis could not be reached), so a caller may still show it.
func (c *Counters) GetOrLoad(ctx context.Context, key Key, load func(context.Context) (int64, error)) (int64, error) {
	n, ok, err := c.get(ctx, key)
	if err != nil || ok {
		return n, err
	}
	rk, err := c.redisKey(key)
	if err != nil {
		return 0, err
	}
	// Concurrent misses of one counter share one load (the seed is safe either way, the
	// database query is what this saves). A caller whose ctx ends stops waiting; the load
	// goes on for the others.
	ch := c.loads.DoChan(rk, func() (any, error) {
		return c.loadAndSeed(context.WithoutCancel(ctx), key, rk, load)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			n, _ := r.Val.(int64)
			return n, r.Err
		}
		return r.Val.(int64), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (c *Counters) loadAndSeed(ctx context.Context, key Key, rk string, load func(context.Context) (int64, error)) (int64, error) {
	// A caller that missed just before another load seeded the counter arrives here after
	// that load has finished: look again rather than query the database again.
	if n, ok, err := c.get(ctx, key); err == nil && ok {
		return n, nil
	}
	loaded, err := load(ctx)
	if err != nil {
		return 0, fmt.Errorf("counter: load %s: %w", key, err)
	}
	cctx, cancel := c.withTimeout(ctx)
	defer cancel()
	res := seedScript.Exec(cctx, c.client, []string{rk}, []string{strconv.FormatInt(loaded, 10), strconv.FormatInt(c.ttlMs, 10)})
	n, err := res.AsInt64()
	if err != nil {
		return loaded, c.replyError(ctx, "seed", key, res.Error(), err)
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
	if ttl < 0 {
		return fmt.Errorf("counter: set %s: negative ttl %v", key, ttl)
	}
	ms := c.ttlMs
	if ttl > 0 {
		ms = ceilMillis(ttl)
	}
	set := c.client.B().Set().Key(rk).Value(strconv.FormatInt(value, 10))
	var cmd rueidis.Completed
	if ms > 0 {
		cmd = set.PxMilliseconds(ms).Build()
	} else {
		cmd = set.Build()
	}
	cctx, cancel := c.withTimeout(ctx)
	defer cancel()
	if err := c.client.Do(cctx, cmd).Error(); err != nil {
		return classify(ctx, "set", key, err)
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
	cctx, cancel := c.withTimeout(ctx)
	defer cancel()
	errs := rueidis.MDel(c.client, cctx, rks)
	for i, rk := range rks {
		if err := errs[rk]; err != nil {
			return classify(ctx, "delete", keys[i], err)
		}
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
	cctx, cancel := c.withTimeout(ctx)
	defer cancel()
	if c.client.Mode() == rueidis.ClientModeCluster {
		return c.getManyCluster(ctx, cctx, keys, rks, out)
	}
	vals, err := c.client.Do(cctx, c.client.B().Mget().Key(rks...).Build().Pin()).ToArray()
	if err != nil {
		return nil, classify(ctx, "get many", keys[0], err)
	}
	if len(vals) != len(rks) {
		return nil, fmt.Errorf("counter: get many %s: MGET of %d keys returned %d values", keys[0], len(rks), len(vals))
	}
	for i := range vals {
		if err := collect(out, keys[i], &vals[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// getManyCluster lets rueidis group the keys by hash slot: one MGET per slot, pipelined per node.
func (c *Counters) getManyCluster(ctx, cctx context.Context, keys []Key, rks []string, out map[Key]int64) (map[Key]int64, error) {
	vals, err := rueidis.MGet(c.client, cctx, rks)
	if err != nil {
		return nil, classify(ctx, "get many", keys[0], err)
	}
	for i, rk := range rks {
		if v, ok := vals[rk]; ok {
			if err := collect(out, keys[i], &v); err != nil {
				return nil, err
			}
		}
	}
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

// withTimeout bounds one Redis call by Options.Timeout: a shared deadline when ctx cannot
// be cancelled (no timer per call), the caller's own when it comes first (internal/deadline).
func (c *Counters) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return c.bounds.Context(ctx)
}

// replyError reports why a reply did not give an int64: replyErr is the call's own error
// (network or Redis error reply), parseErr the conversion's.
func (c *Counters) replyError(ctx context.Context, op string, key Key, replyErr, parseErr error) error {
	if replyErr != nil {
		return classify(ctx, op, key, replyErr)
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
