package counter

import (
	"context"
	"errors"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	likes = Key{Target: "article", ID: "123", Counter: "likes"}
	views = Key{Target: "article", ID: "123", Counter: "views"}
)

func newClient(t *testing.T, s *redistest.Server) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.Addr()}, DisableCache: true})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func newCounters(t *testing.T, s *redistest.Server, opts Options) *Counters {
	t.Helper()
	return New(newClient(t, s), opts)
}

func rkey(t *testing.T, c *Counters, k Key) string {
	t.Helper()
	rk, err := c.RedisKey(k)
	require.NoError(t, err)
	return rk
}

func pttl(t *testing.T, s *redistest.Server, rk string) time.Duration {
	t.Helper()
	ms, err := s.Do("PTTL", rk).AsInt64()
	require.NoError(t, err)
	return time.Duration(ms) * time.Millisecond
}

func exists(t *testing.T, s *redistest.Server, rk string) bool {
	t.Helper()
	n, err := s.Do("EXISTS", rk).AsInt64()
	require.NoError(t, err)
	return n == 1
}

func TestBasicOperations(t *testing.T) {
	s := redistest.Start(t)
	c := newCounters(t, s, Options{KeyPrefix: "synspirit:"})
	ctx := context.Background()

	assert.Equal(t, "synspirit:count:article:123:likes", rkey(t, c, likes))

	n, err := c.Get(ctx, likes, -1)
	require.NoError(t, err)
	assert.Equal(t, int64(-1), n, "a missing counter reads as the default")

	n, err = c.Increment(ctx, likes, 1)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "persistent mode creates a missing counter")
	n, err = c.Increment(ctx, likes, 41)
	require.NoError(t, err)
	assert.Equal(t, int64(42), n)
	n, err = c.Decrement(ctx, likes, 2)
	require.NoError(t, err)
	assert.Equal(t, int64(40), n)

	raw, err := s.Do("GET", "synspirit:count:article:123:likes").ToString()
	require.NoError(t, err)
	assert.Equal(t, "40", raw, "the counter is a plain Redis integer under the original key form")

	require.NoError(t, c.Set(ctx, views, 7, 0))
	n, err = c.Get(ctx, views, 0)
	require.NoError(t, err)
	assert.Equal(t, int64(7), n)

	require.NoError(t, c.Delete(ctx, likes, views, Key{"article", "404", "likes"}))
	assert.False(t, exists(t, s, rkey(t, c, likes)))
	assert.False(t, exists(t, s, rkey(t, c, views)))
	require.NoError(t, c.Delete(ctx))
}

// Two instances (two clients, as two servers of the service would have) increment one counter
// concurrently: Redis atomics make the total exact.
func TestConcurrentIncrementsAcrossInstances(t *testing.T) {
	s := redistest.Start(t)
	const instances, goroutines, increments = 2, 50, 1000
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, instances*goroutines)
	for i := 0; i < instances; i++ {
		c := newCounters(t, s, Options{KeyPrefix: "p:", Timeout: 5 * time.Second})
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < increments; j++ {
					if _, err := c.Increment(ctx, likes, 1); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c := newCounters(t, s, Options{KeyPrefix: "p:"})
	n, err := c.Get(ctx, likes, 0)
	require.NoError(t, err)
	assert.Equal(t, int64(instances*goroutines*increments), n)
}

func TestCacheModeExpiry(t *testing.T) {
	s := redistest.Start(t)
	c := newCounters(t, s, Options{TTL: DefaultCacheTTL})
	ctx := context.Background()
	rk := rkey(t, c, likes)

	_, err := c.Increment(ctx, likes, 1)
	require.ErrorIs(t, err, ErrNotFound, "cache mode must not create a counter from zero")
	_, err = c.Decrement(ctx, likes, 1)
	require.ErrorIs(t, err, ErrNotFound)
	assert.False(t, exists(t, s, rk), "no resurrection")

	loads := 0
	load := func(context.Context) (int64, error) { loads++; return 41, nil }
	n, err := c.GetOrLoad(ctx, likes, load)
	require.NoError(t, err)
	assert.Equal(t, int64(41), n)
	assert.Equal(t, 1, loads)
	ttl := pttl(t, s, rk)
	assert.True(t, ttl > DefaultCacheTTL-5*time.Second && ttl <= DefaultCacheTTL, "seeded with the TTL, got %v", ttl)

	// Increments keep the remaining TTL: shorten it, increment, and it must not be reset.
	s.Do("PEXPIRE", rk, "5000")
	n, err = c.Increment(ctx, likes, 1)
	require.NoError(t, err)
	assert.Equal(t, int64(42), n)
	n, err = c.Decrement(ctx, likes, 50) // clamped at the floor: a SET inside the script
	require.NoError(t, err)
	assert.Equal(t, int64(0), n)
	ttl = pttl(t, s, rk)
	assert.True(t, ttl > 0 && ttl <= 5*time.Second, "TTL changed by increments: %v", ttl)

	n, err = c.GetOrLoad(ctx, likes, load)
	require.NoError(t, err)
	assert.Equal(t, int64(0), n)
	assert.Equal(t, 1, loads, "a hit does not call the loader")

	// Expiry, simulated by a short PEXPIRE, then by DEL.
	s.Do("PEXPIRE", rk, "1")
	require.Eventually(t, func() bool { return !exists(t, s, rk) }, 2*time.Second, time.Millisecond)
	_, err = c.Increment(ctx, likes, 1)
	require.ErrorIs(t, err, ErrNotFound)
	assert.False(t, exists(t, s, rk), "no resurrection after expiry")

	n, err = c.GetOrLoad(ctx, likes, load)
	require.NoError(t, err)
	assert.Equal(t, int64(41), n)
	s.Do("DEL", rk)
	_, err = c.Increment(ctx, likes, 1)
	require.ErrorIs(t, err, ErrNotFound)

	// Set with ttl 0 uses the Counters' TTL.
	require.NoError(t, c.Set(ctx, likes, 3, 0))
	ttl = pttl(t, s, rk)
	assert.True(t, ttl > DefaultCacheTTL-5*time.Second && ttl <= DefaultCacheTTL, "Set TTL %v", ttl)
	require.NoError(t, c.Set(ctx, likes, 3, 2*time.Second))
	ttl = pttl(t, s, rk)
	assert.True(t, ttl > 0 && ttl <= 2*time.Second, "Set TTL %v", ttl)
}

// A seed never clobbers a counter that someone else seeded and incremented meanwhile.
func TestGetOrLoadDoesNotClobber(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	a := newCounters(t, s, Options{TTL: time.Minute})
	b := newCounters(t, s, Options{TTL: time.Minute})

	n, err := a.GetOrLoad(ctx, likes, func(ctx context.Context) (int64, error) {
		// While a loads (slowly), b loads a fresher value, seeds, and gets an increment.
		if _, err := b.GetOrLoad(ctx, likes, func(context.Context) (int64, error) { return 100, nil }); err != nil {
			return 0, err
		}
		if _, err := b.Increment(ctx, likes, 1); err != nil {
			return 0, err
		}
		return 5, nil
	})
	require.NoError(t, err)
	assert.Equal(t, int64(101), n, "GetOrLoad returns what Redis holds after the seed")

	loadErr := errors.New("database down")
	_, err = a.GetOrLoad(ctx, views, func(context.Context) (int64, error) { return 0, loadErr })
	require.ErrorIs(t, err, loadErr)
	assert.False(t, exists(t, s, rkey(t, a, views)))
}

func TestPersistentMode(t *testing.T) {
	s := redistest.Start(t)
	c := newCounters(t, s, Options{})
	ctx := context.Background()
	rk := rkey(t, c, likes)

	n, err := c.Increment(ctx, likes, 3)
	require.NoError(t, err)
	assert.Equal(t, int64(3), n)
	assert.Equal(t, time.Duration(-1*time.Millisecond), pttl(t, s, rk), "persistent counters do not expire")

	n, err = c.GetOrLoad(ctx, views, func(context.Context) (int64, error) { return 9, nil })
	require.NoError(t, err)
	assert.Equal(t, int64(9), n)
	assert.Equal(t, time.Duration(-1*time.Millisecond), pttl(t, s, rkey(t, c, views)))

	require.NoError(t, c.Set(ctx, likes, 1, time.Second))
	assert.True(t, pttl(t, s, rk) > 0)
	require.NoError(t, c.Set(ctx, likes, 1, 0))
	assert.Equal(t, time.Duration(-1*time.Millisecond), pttl(t, s, rk), "Set with ttl 0 in persistent mode clears the TTL")
	require.Error(t, c.Set(ctx, likes, 1, -time.Second))
}

func TestFloor(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()

	t.Run("default floor 0", func(t *testing.T) {
		c := newCounters(t, s, Options{KeyPrefix: "f0:"})
		n, err := c.Decrement(ctx, likes, 1)
		require.NoError(t, err)
		assert.Equal(t, int64(0), n, "a missing persistent counter decremented stays at 0")
		assert.True(t, exists(t, s, rkey(t, c, likes)))

		require.NoError(t, c.Set(ctx, likes, 2, 0))
		n, err = c.Decrement(ctx, likes, 5)
		require.NoError(t, err)
		assert.Equal(t, int64(0), n)
		n, err = c.Increment(ctx, likes, -3)
		require.NoError(t, err)
		assert.Equal(t, int64(0), n, "a negative increment is a decrement")
		n, err = c.Decrement(ctx, likes, math.MaxInt64)
		require.NoError(t, err)
		assert.Equal(t, int64(0), n)

		require.NoError(t, c.Set(ctx, likes, -5, 0))
		n, err = c.Decrement(ctx, likes, 1)
		require.NoError(t, err)
		assert.Equal(t, int64(-5), n, "a counter already below the floor is left as is")
		n, err = c.Increment(ctx, likes, 1)
		require.NoError(t, err)
		assert.Equal(t, int64(-4), n, "increments are not limited by the floor")
	})

	t.Run("custom floor", func(t *testing.T) {
		c := newCounters(t, s, Options{KeyPrefix: "f10:", Floor: -10})
		n, err := c.Decrement(ctx, likes, 7)
		require.NoError(t, err)
		assert.Equal(t, int64(-7), n)
		n, err = c.Decrement(ctx, likes, 7)
		require.NoError(t, err)
		assert.Equal(t, int64(-10), n)
	})

	t.Run("large floor compared exactly", func(t *testing.T) {
		floor := int64(1)<<60 + 1 // not representable as a double
		c := newCounters(t, s, Options{KeyPrefix: "fl:", Floor: floor})
		require.NoError(t, c.Set(ctx, likes, floor+1, 0))
		n, err := c.Decrement(ctx, likes, 1)
		require.NoError(t, err)
		assert.Equal(t, floor, n)
		n, err = c.Decrement(ctx, likes, 1)
		require.NoError(t, err)
		assert.Equal(t, floor, n)
	})

	t.Run("no floor", func(t *testing.T) {
		c := newCounters(t, s, Options{KeyPrefix: "nf:", NoFloor: true, Floor: 5})
		n, err := c.Decrement(ctx, likes, 7)
		require.NoError(t, err)
		assert.Equal(t, int64(-7), n)
	})
}

func TestOverflow(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	c := newCounters(t, s, Options{KeyPrefix: "o:", NoFloor: true})

	require.NoError(t, c.Set(ctx, likes, math.MaxInt64-1, 0))
	n, err := c.Increment(ctx, likes, 1)
	require.NoError(t, err)
	assert.Equal(t, int64(math.MaxInt64), n, "values beyond 2^53 stay exact")
	_, err = c.Increment(ctx, likes, 1)
	require.ErrorIs(t, err, ErrOverflow)
	n, err = c.Get(ctx, likes, 0)
	require.NoError(t, err)
	assert.Equal(t, int64(math.MaxInt64), n, "overflow leaves the counter unchanged")

	require.NoError(t, c.Set(ctx, likes, math.MinInt64+1, 0))
	n, err = c.Decrement(ctx, likes, 1)
	require.NoError(t, err)
	assert.Equal(t, int64(math.MinInt64), n)
	_, err = c.Decrement(ctx, likes, 1)
	require.ErrorIs(t, err, ErrOverflow)
	_, err = c.Decrement(ctx, likes, math.MinInt64)
	require.ErrorIs(t, err, ErrOverflow)

	big := int64(1)<<53 + 1
	require.NoError(t, c.Set(ctx, likes, big, 0))
	n, err = c.Increment(ctx, likes, 2)
	require.NoError(t, err)
	assert.Equal(t, big+2, n)
	n, err = c.Decrement(ctx, likes, 1)
	require.NoError(t, err)
	assert.Equal(t, big+1, n)

	// The same through the script (cache mode).
	cm := newCounters(t, s, Options{KeyPrefix: "o:", TTL: time.Minute})
	require.NoError(t, cm.Set(ctx, views, math.MaxInt64-2, 0))
	_, err = cm.Increment(ctx, views, 3)
	require.ErrorIs(t, err, ErrOverflow)
	n, err = cm.Increment(ctx, views, 2)
	require.NoError(t, err)
	assert.Equal(t, int64(math.MaxInt64), n)

	// With a floor, a decrement past the int64 range is below any floor: it stops there.
	f := newCounters(t, s, Options{KeyPrefix: "o:", Floor: math.MinInt64})
	require.NoError(t, f.Set(ctx, likes, math.MinInt64+1, 0))
	n, err = f.Decrement(ctx, likes, 5)
	require.NoError(t, err)
	assert.Equal(t, int64(math.MinInt64), n)
}

func TestBadKeys(t *testing.T) {
	s := redistest.Start(t)
	c := newCounters(t, s, Options{})
	ctx := context.Background()
	bad := Key{Target: "article", ID: "", Counter: "likes"}

	_, err := c.Increment(ctx, bad, 1)
	assert.ErrorIs(t, err, ErrBadKey)
	_, err = c.Decrement(ctx, bad, 1)
	assert.ErrorIs(t, err, ErrBadKey)
	_, err = c.Get(ctx, bad, 0)
	assert.ErrorIs(t, err, ErrBadKey)
	assert.ErrorIs(t, c.Set(ctx, bad, 1, 0), ErrBadKey)
	assert.ErrorIs(t, c.Delete(ctx, likes, bad), ErrBadKey)
	_, err = c.GetMany(ctx, []Key{likes, bad})
	assert.ErrorIs(t, err, ErrBadKey)
	_, err = c.GetOrLoad(ctx, bad, func(context.Context) (int64, error) { return 1, nil })
	assert.ErrorIs(t, err, ErrBadKey)

	// An ID containing ':' is a different counter from the key a naive join would collide with.
	a, b := Key{"article", "1:likes", "x"}, Key{"article:1", "likes", "x"}
	_, err = c.Increment(ctx, a, 1)
	require.NoError(t, err)
	_, err = c.Increment(ctx, b, 2)
	require.NoError(t, err)
	got, err := c.GetMany(ctx, []Key{a, b})
	require.NoError(t, err)
	assert.Equal(t, map[Key]int64{a: 1, b: 2}, got)
}

func TestGetMany(t *testing.T) {
	s := redistest.Start(t)
	c := newCounters(t, s, Options{KeyPrefix: "gm:"})
	ctx := context.Background()

	keys := make([]Key, 50)
	want := map[Key]int64{}
	for i := range keys {
		keys[i] = Key{"article", strconv.Itoa(i), "likes"}
		if i%3 != 0 { // every third is missing
			require.NoError(t, c.Set(ctx, keys[i], int64(i), 0))
			want[keys[i]] = int64(i)
		}
	}
	got, err := c.GetMany(ctx, keys)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	got, err = c.GetMany(ctx, []Key{keys[1], keys[1], keys[0]})
	require.NoError(t, err)
	assert.Equal(t, map[Key]int64{keys[1]: 1}, got, "duplicates are harmless")

	got, err = c.GetMany(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, got)

	s.Do("HSET", rkey(t, c, keys[0]), "f", "1")
	got, err = c.GetMany(ctx, keys[:2])
	require.NoError(t, err)
	assert.Equal(t, map[Key]int64{keys[1]: 1}, got, "a non-string key reads as missing")

	s.Do("SET", rkey(t, c, keys[3]), "abc")
	_, err = c.GetMany(ctx, keys[:4])
	assert.ErrorIs(t, err, ErrNotCounter)
}

func TestWrongType(t *testing.T) {
	s := redistest.Start(t)
	c := newCounters(t, s, Options{KeyPrefix: "wt:"})
	cm := newCounters(t, s, Options{KeyPrefix: "wt:", TTL: time.Minute})
	ctx := context.Background()
	s.Do("HSET", rkey(t, c, likes), "f", "1")
	s.Do("SET", rkey(t, c, views), "not a number")

	for _, k := range []Key{likes, views} {
		for name, c := range map[string]*Counters{"persistent": c, "cache": cm} {
			_, err := c.Increment(ctx, k, 1)
			assertNotCounter(t, name+" increment "+k.Counter, err)
			_, err = c.Decrement(ctx, k, 1)
			assertNotCounter(t, name+" decrement "+k.Counter, err)
			_, err = c.Get(ctx, k, 0)
			assertNotCounter(t, name+" get "+k.Counter, err)
			_, err = c.GetOrLoad(ctx, k, func(context.Context) (int64, error) { return 1, nil })
			assertNotCounter(t, name+" get or load "+k.Counter, err)
		}
	}
	typ, err := s.Do("TYPE", rkey(t, c, likes)).ToString()
	require.NoError(t, err)
	assert.Equal(t, "hash", typ, "the foreign value is left alone")
}

func assertNotCounter(t *testing.T, what string, err error) {
	t.Helper()
	assert.ErrorIs(t, err, ErrNotCounter, what)
	assert.NotErrorIs(t, err, ErrUnavailable, what)
	assert.NotErrorIs(t, err, ErrNotFound, what)
}

func TestRedisStopped(t *testing.T) {
	s := redistest.Start(t)
	c := newCounters(t, s, Options{TTL: time.Minute})
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, likes, 1, 0))

	s.Stop()
	load := func(context.Context) (int64, error) { return 1, nil }
	calls := map[string]func() error{
		"Increment": func() error { _, err := c.Increment(ctx, likes, 1); return err },
		"Decrement": func() error { _, err := c.Decrement(ctx, likes, 1); return err },
		"Get":       func() error { _, err := c.Get(ctx, likes, 0); return err },
		"GetOrLoad": func() error { _, err := c.GetOrLoad(ctx, likes, load); return err },
		"Set":       func() error { return c.Set(ctx, likes, 1, 0) },
		"Delete":    func() error { return c.Delete(ctx, likes, views) },
		"GetMany":   func() error { _, err := c.GetMany(ctx, []Key{likes, views}); return err },
	}
	for name, call := range calls {
		err := call()
		assert.ErrorIs(t, err, tiered.ErrUnavailable, name)
		assert.ErrorIs(t, err, ErrUnavailable, name)
		assert.NotErrorIs(t, err, ErrNotFound, name)
	}

	s.Restart()
	require.Eventually(t, func() bool { return c.Set(ctx, likes, 5, 0) == nil }, 5*time.Second, 10*time.Millisecond)
	n, err := c.Get(ctx, likes, 0)
	require.NoError(t, err)
	assert.Equal(t, int64(5), n)
}

// A server that accepts commands but does not answer: the per-call deadline bounds every call,
// and its expiry is reported as unavailability (wrapping context.DeadlineExceeded).
func TestRedisUnresponsive(t *testing.T) {
	s := redistest.Start(t)
	c := newCounters(t, s, Options{Timeout: 50 * time.Millisecond})
	ctx := context.Background()
	_, err := c.Increment(ctx, likes, 1)
	require.NoError(t, err)

	s.Do("CLIENT", "PAUSE", "300", "ALL")
	_, err = c.Increment(ctx, likes, 1)
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, err, tiered.ErrUnavailable)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "that match is kept for the caller's own deadline")
	var timeout interface{ Timeout() bool }
	assert.True(t, errors.As(err, &timeout) && timeout.Timeout(), "a timeout: %v", err)
	_, err = c.Get(ctx, likes, 0)
	assert.ErrorIs(t, err, ErrUnavailable)

	// The caller giving up is the caller's error, not Redis being down.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = c.Increment(cctx, likes, 1)
	assert.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, ErrUnavailable)
	s.Do("CLIENT", "UNPAUSE")
}

func TestInvalidOptions(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for name, c := range map[string]*Counters{
		"nil client":   New(nil, Options{}),
		"negative TTL": newCounters(t, s, Options{TTL: -time.Second}),
	} {
		_, err := c.Increment(ctx, likes, 1)
		assert.ErrorIs(t, err, ErrInvalidOptions, name)
		_, err = c.GetMany(ctx, []Key{likes})
		assert.ErrorIs(t, err, ErrInvalidOptions, name)
		assert.ErrorIs(t, c.Delete(ctx, likes), ErrInvalidOptions, name)
	}
}

// Concurrent misses of one counter run the loader once per instance.
func TestGetOrLoadSharesOneLoad(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	c := newCounters(t, s, Options{TTL: time.Minute})
	var loads atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]int64, 50)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := c.GetOrLoad(ctx, likes, func(context.Context) (int64, error) {
				loads.Add(1)
				<-release
				return 500, nil
			})
			assert.NoError(t, err)
			results[i] = n
		}()
	}
	require.Eventually(t, func() bool { return loads.Load() == 1 }, time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	assert.EqualValues(t, 1, loads.Load())
	for _, n := range results {
		assert.EqualValues(t, 500, n)
	}
}

// A loader's context ends when it returns, also for a caller whose context cannot end (its
// load runs under a lifetime that may never end).
func TestLoaderContextEndsWithTheLoader(t *testing.T) {
	s := redistest.Start(t)
	c := newCounters(t, s, Options{TTL: DefaultCacheTTL})
	ended := make(chan struct{})
	n, err := c.GetOrLoad(context.Background(), likes, func(lctx context.Context) (int64, error) {
		context.AfterFunc(lctx, func() { close(ended) })
		return 7, nil
	})
	require.NoError(t, err)
	assert.Equal(t, int64(7), n)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the loader's context is still live after GetOrLoad returned")
	}
}
