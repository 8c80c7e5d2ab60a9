package tiered_test

// Behaviour at the edges: outages, the caller's own deadline, panicking loaders, large
// values and TTLs, group registration and errors as users read them.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// edgeFast are the small timeouts of the caches of these tests.
func edgeFast(o *tiered.Options) {
	o.Timeout = 50 * time.Millisecond
	o.BreakerCooldown = 50 * time.Millisecond
}

// edgeDown returns a cache whose Redis is down, in one of the ways an outage shows:
// "stopped after New" (the cache connected, then Redis died) or "started without redis"
// (StartWithoutRedis on a URL of a stopped server).
func edgeDown(t *testing.T, how string) *tiered.Cache {
	t.Helper()
	s := redistest.Start(t)
	switch how {
	case "stopped after New":
		c := newCache(t, s, edgeFast)
		s.Stop()
		return c
	case "started without redis":
		s.Stop()
		return newCache(t, s, edgeFast, func(o *tiered.Options) { o.StartWithoutRedis = true })
	}
	t.Fatalf("unknown outage %q", how)
	return nil
}

var edgeOutages = []string{"stopped after New", "started without redis"}

// edgeWaitUntil polls cond until it holds or d has passed, without failing: for waits whose
// only purpose is to let goroutines reach a blocking point before the test goes on.
func edgeWaitUntil(d time.Duration, cond func() bool) {
	deadline := time.Now().Add(d)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(tick)
	}
}

func edgePTTL(t *testing.T, s *redistest.Server, key string) int64 {
	t.Helper()
	ms, err := s.Do("PTTL", key).AsInt64()
	require.NoError(t, err)
	return ms
}

func edgeExists(t *testing.T, s *redistest.Server, key string) bool {
	t.Helper()
	n, err := s.Do("EXISTS", key).AsInt64()
	require.NoError(t, err)
	return n == 1
}

// edgeCallNoPanic runs fn and turns a raw panic into a test failure (with the value), so
// that a loader panic that escapes GetOrLoad fails the test instead of the binary.
func edgeCallNoPanic(t *testing.T, what string, fn func()) {
	t.Helper()
	var raw any
	panicked := true
	func() {
		defer func() {
			if panicked {
				raw = recover()
			}
		}()
		fn()
		panicked = false
	}()
	require.False(t, panicked, "%s: the loader's panic reached the caller as a raw panic (%v), not as a *tiered.PanicError", what, raw)
}

// While Redis is down, concurrent GetOrLoad calls of one cold key share one load.
func TestOutageGetOrLoadSharesOneLoad(t *testing.T) {
	for _, how := range edgeOutages {
		t.Run(how, func(t *testing.T) {
			c := edgeDown(t, how)
			g := tiered.NewGroup[string](c, "cold", time.Minute)
			const callers = 100
			var loads atomic.Int64
			release := make(chan struct{})
			var releaseOnce sync.Once
			releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
			t.Cleanup(releaseAll)

			var started, done sync.WaitGroup
			started.Add(callers)
			vals := make([]string, callers)
			errs := make([]error, callers)
			for i := range callers {
				done.Add(1)
				go func() {
					defer done.Done()
					started.Done()
					vals[i], errs[i] = g.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) {
						loads.Add(1)
						<-release
						return "loaded", nil
					})
				}()
			}
			started.Wait()
			// Let every caller reach its loader or the shared load (LoadsShared counts the
			// joiners when the fix uses the cache's flight; the time bound covers a fix that
			// shares loads another way).
			edgeWaitUntil(2*time.Second, func() bool { return loads.Load()+int64(c.Stats().LoadsShared) >= callers })
			releaseAll()
			done.Wait()
			for i := range callers {
				require.NoError(t, errs[i], "caller %d", i)
				require.Equal(t, "loaded", vals[i], "caller %d", i)
			}
			require.LessOrEqual(t, loads.Load(), int64(3),
				"%d concurrent GetOrLoad calls of one cold key ran the loader %d times while Redis was down", callers, loads.Load())
		})
	}
}

// A loader panic reaches the caller as a *tiered.PanicError on every path, not as a raw
// panic: Redis down, a closed cache, an expired or cancelled caller context.
func TestLoaderPanicIsAPanicErrorOnEveryPath(t *testing.T) {
	panicky := func(context.Context) (string, error) { panic("loader bug") }
	requirePanicError := func(t *testing.T, err error) {
		t.Helper()
		var pe *tiered.PanicError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, "loader bug", pe.Value)
	}
	for _, how := range edgeOutages {
		t.Run("redis down: "+how, func(t *testing.T) {
			c := edgeDown(t, how)
			g := tiered.NewGroup[string](c, "p", time.Minute)
			var err error
			edgeCallNoPanic(t, "GetOrLoad with Redis down", func() {
				_, err = g.GetOrLoad(context.Background(), "k", panicky)
			})
			requirePanicError(t, err)
		})
	}
	t.Run("after Close", func(t *testing.T) {
		s := redistest.Start(t)
		c := newCache(t, s, edgeFast)
		g := tiered.NewGroup[string](c, "p", time.Minute)
		require.NoError(t, c.Close())
		var err error
		edgeCallNoPanic(t, "GetOrLoad after Close", func() {
			_, err = g.GetOrLoad(context.Background(), "k", panicky)
		})
		requirePanicError(t, err)
	})
	expired, cancelExpired := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancelExpired()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for name, ctx := range map[string]context.Context{"expired ctx": expired, "cancelled ctx": cancelled} {
		t.Run(name, func(t *testing.T) {
			s := redistest.Start(t)
			c := newCache(t, s, edgeFast)
			for _, warmGroup := range []bool{false, true} {
				g := tiered.NewGroup[string](c, "p"+strconv.FormatBool(warmGroup), time.Minute)
				if warmGroup { // the group's generation is known: the load goes through the flight
					require.NoError(t, g.Set(context.Background(), "other", "x"))
				}
				var err error
				edgeCallNoPanic(t, name+", warm group "+strconv.FormatBool(warmGroup), func() {
					_, err = g.GetOrLoad(ctx, "k", panicky)
				})
				require.Error(t, err)
				if !errors.Is(err, ctx.Err()) {
					requirePanicError(t, err)
				}
			}
		})
	}
}

// The caller's own deadline or cancellation is the caller's error, not a Redis outage, and
// it does not count against the breaker.
func TestCallerDeadlineIsNotAnOutage(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s, edgeFast)
	ctx := context.Background()
	cold := tiered.NewGroup[string](c, "cold", time.Minute) // generation never read
	warmG := tiered.NewGroup[string](c, "warm", time.Minute)
	require.NoError(t, warmG.Set(ctx, "other", "x")) // generation known; "k" is not in L1

	expired, cancelExpired := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancelExpired()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	cases := []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"expired", expired, context.DeadlineExceeded},
		{"cancelled", cancelled, context.Canceled},
	}
	groups := map[string]*tiered.Group[string]{"cold group": cold, "warm group": warmG}
	for _, tc := range cases {
		for gname, g := range groups {
			for i := range 10 {
				_, err := g.Get(tc.ctx, "k")
				require.ErrorIs(t, err, tc.want, "%s ctx, %s, call %d", tc.name, gname, i)
				require.NotErrorIs(t, err, tiered.ErrUnavailable, "%s ctx, %s: the caller's deadline is not an outage", tc.name, gname)
				require.NotContains(t, err.Error(), "group generation", "%s ctx, %s", tc.name, gname)
			}
		}
	}
	st := c.Stats()
	require.Zero(t, st.BreakerOpens, "callers' own deadlines opened the breaker")
	require.Equal(t, "closed", fmt.Sprint(st.Breaker))
	require.NoError(t, cold.Set(ctx, "k", "v"), "the cache still works")
	v, err := cold.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v", v)
}

// A value far beyond the size limit is refused before it reaches Redis: no Redis error,
// no breaker failure, and the cache keeps working.
func TestBigValueRefusedBeforeRedis(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s) // default options but the test cooldown
	ctx := context.Background()
	big := tiered.NewGroup[[]byte](c, "big", time.Minute, tiered.WithCodec(tiered.Raw{}))
	small := tiered.NewGroup[string](c, "small", time.Minute)
	require.NoError(t, small.Set(ctx, "warm", "x")) // generation known before counting

	data := make([]byte, 100<<20)
	l2Errors := c.Stats().L2Errors
	for i := range 7 { // checked after each, so that a Set that goes to Redis fails at once
		require.Error(t, big.Set(ctx, "k", data), "Set #%d of a 100 MB value succeeded", i+1)
		st := c.Stats()
		require.Equal(t, l2Errors, st.L2Errors, "Set #%d of a 100 MB value went to Redis and failed there", i+1)
		require.Zero(t, st.BreakerOpens, "after Set #%d", i+1)
		require.Equal(t, "closed", fmt.Sprint(st.Breaker), "after Set #%d", i+1)
		require.False(t, edgeExists(t, s, redisKey(t, big, "k")), "Set #%d: the 100 MB value reached Redis", i+1)
	}

	// A small value on another key, through Redis (a fresh key: not an L1 hit).
	require.NoError(t, small.Set(ctx, "s", "ok"), "a small Set after 7 big ones")
	v, err := small.Get(ctx, "s")
	require.NoError(t, err, "a small Get after 7 big Sets")
	require.Equal(t, "ok", v)
}

// A loaded value beyond the size limit is returned with an error and not stored.
func TestBigLoadedValueNotStored(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	big := tiered.NewGroup[[]byte](c, "big", time.Minute, tiered.WithCodec(tiered.Raw{}))
	const size = 20 << 20
	v, err := big.GetOrLoad(context.Background(), "k", func(context.Context) ([]byte, error) { return make([]byte, size), nil })
	require.Len(t, v, size, "the loaded value is returned")
	require.False(t, edgeExists(t, s, redisKey(t, big, "k")), "a 20 MB loaded value was stored in Redis")
	require.Error(t, err, "a 20 MB loaded value: GetOrLoad must say it was not cached")
}

// A huge group TTL must not wrap around: either the group is refused, or the value is
// stored for (at least) a year, not for 1 ms.
func TestHugeTTLDoesNotWrap(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s, func(o *tiered.Options) { o.FailSafeMaxStale = time.Hour })
	ctx := context.Background()
	g := tiered.NewGroup[string](c, "g", time.Duration(math.MaxInt64))
	if err := g.Set(ctx, "k", "v"); err != nil {
		require.ErrorIs(t, err, tiered.ErrInvalidOptions, "a refused TTL is an option error")
		return
	}
	const year = int64(365 * 24 * time.Hour / time.Millisecond)
	ms := edgePTTL(t, s, redisKey(t, g, "k"))
	require.GreaterOrEqual(t, ms, year, "a MaxInt64 TTL stored the value with PTTL %d ms (-2: already gone)", ms)
	got, err := g.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v", got)
}

// edgeTotalAlloc is the bytes allocated by the process so far.
func edgeTotalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// Registering groups costs O(1) each: 20,000 distinct names, and one name 10,000 times.
// The allocation is checked along the way, so that a quadratic registry fails in a moment
// rather than after gigabytes.
func TestGroupRegistrationIsLinear(t *testing.T) {
	const slack = 1 << 20 // maps and slices growing, background goroutines
	t.Run("distinct names", func(t *testing.T) {
		s := redistest.Start(t)
		c := newCache(t, s)
		const n, perGroup = 20000, 4 << 10
		groups := make([]*tiered.Group[string], 0, n)
		before := edgeTotalAlloc()
		for i := range n {
			groups = append(groups, tiered.NewGroup[string](c, "g"+strconv.Itoa(i), time.Minute))
			if (i+1)%500 == 0 || i == n-1 {
				grown := edgeTotalAlloc() - before
				require.Less(t, grown, uint64((i+1)*perGroup+slack),
					"%d groups with distinct names allocated %d bytes (%d per group)", i+1, grown, grown/uint64(i+1))
			}
		}
		ctx := context.Background()
		for _, g := range []*tiered.Group[string]{groups[0], groups[n/2], groups[n-1]} {
			require.NoError(t, g.Set(ctx, "k", g.Name()))
			v, err := g.Get(ctx, "k")
			require.NoError(t, err)
			require.Equal(t, g.Name(), v)
		}
	})
	t.Run("same name", func(t *testing.T) {
		s := redistest.Start(t)
		c := newCache(t, s)
		const n, perCall = 10000, 2 << 10
		var last *tiered.Group[string]
		before := edgeTotalAlloc()
		for i := range n {
			last = tiered.NewGroup[string](c, "same", time.Minute)
			if (i+1)%500 == 0 || i == n-1 {
				grown := edgeTotalAlloc() - before
				require.Less(t, grown, uint64((i+1)*perCall+slack),
					"NewGroup of one name %d times allocated %d bytes (%d per call)", i+1, grown, grown/uint64(i+1))
			}
		}
		ctx := context.Background()
		require.NoError(t, last.Set(ctx, "k", "v"))
		v, err := last.Get(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, "v", v)
	})
}

// A second group of a name with another value type or codec is refused (its calls return
// ErrInvalidOptions) instead of clobbering the first; the same name, type and codec twice is
// fine.
func TestSameNameOtherTypeIsRefused(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	ctx := context.Background()

	g1 := tiered.NewGroup[string](c, "x", 0)
	require.NoError(t, g1.Set(ctx, "k", "a"))
	g2 := tiered.NewGroup[int](c, "x", 0)
	require.ErrorIs(t, g2.Set(ctx, "k", 1), tiered.ErrInvalidOptions, "Set on a group of name \"x\" with another type")
	_, err := g2.Get(ctx, "k")
	require.ErrorIs(t, err, tiered.ErrInvalidOptions, "Get on a group of name \"x\" with another type")
	_, err = g2.GetOrLoad(ctx, "k", func(context.Context) (int, error) { return 7, nil })
	require.ErrorIs(t, err, tiered.ErrInvalidOptions, "GetOrLoad on a group of name \"x\" with another type")
	v, err := g1.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "a", v, "the first group's value survives")

	b1 := tiered.NewGroup[[]byte](c, "y", 0)
	require.NoError(t, b1.Set(ctx, "k", []byte("json")))
	b2 := tiered.NewGroup[[]byte](c, "y", 0, tiered.WithCodec(tiered.Raw{}))
	require.ErrorIs(t, b2.Set(ctx, "k", []byte("raw")), tiered.ErrInvalidOptions, "same name and type, another codec")
	bv, err := b1.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, []byte("json"), bv)

	z1 := tiered.NewGroup[string](c, "z", 0)
	z2 := tiered.NewGroup[string](c, "z", 0)
	require.NoError(t, z1.Set(ctx, "k", "from z1"))
	zv, err := z2.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "from z1", zv)
	require.NoError(t, z2.Set(ctx, "k", "from z2"))
	zv, err = z1.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "from z2", zv)
}

// Errors read once: one line, no repeated prefixes, no internal step names.
func TestErrorsReadOnce(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s, edgeFast)
	ctx := context.Background()
	g := tiered.NewGroup[string](c, "g", time.Minute)

	t.Run("nil loader", func(t *testing.T) {
		var err error
		edgeCallNoPanic(t, "GetOrLoad with a nil loader", func() { _, err = g.GetOrLoad(ctx, "nil", nil) })
		require.Error(t, err)
		require.NotContains(t, err.Error(), "\n", "GetOrLoad(nil loader) error: %q", err.Error())
	})
	t.Run("panic error", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := g.GetOrLoad(ctx, "panics", func(context.Context) (string, error) { panic(boom) })
		var pe *tiered.PanicError
		require.ErrorAs(t, err, &pe)
		require.NotEmpty(t, pe.Stack, "the stack is kept in the Stack field")
		require.NotContains(t, pe.Error(), "\n", "PanicError.Error() is one line, without the stack")
		require.NotContains(t, err.Error(), "\n")
		require.ErrorIs(t, err, boom, "errors.Is reaches the error the loader panicked with")
		require.Equal(t, boom, errors.Unwrap(pe))
	})
	t.Run("get miss", func(t *testing.T) {
		s.Do("SET", redisKey(t, g, "foreign"), "plain text")
		s.Do("SET", redisKey(t, g, "expired"), string(tiered.EnvelopeForTest([]byte(`"v"`), time.Now().Add(-time.Hour).UnixMilli())))
		for _, key := range []string{"missing", "foreign", "expired"} {
			_, err := g.Get(ctx, key)
			require.ErrorIs(t, err, tiered.ErrNotFound, key)
			require.NotContains(t, err.Error(), "tiered: tiered:", key)
		}
	})
	t.Run("redis stopped", func(t *testing.T) {
		s2 := redistest.Start(t)
		c2 := newCache(t, s2, edgeFast)
		cold := tiered.NewGroup[string](c2, "cold", time.Minute)
		s2.Stop()
		_, err := cold.Get(ctx, "k")
		require.ErrorIs(t, err, tiered.ErrUnavailable)
		require.NotContains(t, err.Error(), "group generation")
		assert.NotContains(t, err.Error(), "\n")
	})
}

// A bad group name is an option error.
func TestBadGroupNameIsInvalidOptions(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	for _, name := range []string{"bad name", ""} {
		_, err := tiered.NewGroup[string](c, name, 0).Get(context.Background(), "k")
		require.ErrorIs(t, err, tiered.ErrInvalidOptions, "group name %q", name)
	}
}

// Values beyond the limit fail with ErrTooLarge before they reach Redis; the default
// limit is 4 MiB, and values under it work.
func TestBigValueErrTooLarge(t *testing.T) {
	require.EqualValues(t, 4<<20, tiered.DefaultMaxValueBytes)
	s := redistest.Start(t)
	// The test allocates 100 MB values under the race detector: its small Redis calls (the
	// generation read) may wait out a GC pause longer than the default 100 ms. What it checks
	// is that big values never reach Redis or the breaker, whatever the deadline.
	c := newCache(t, s, func(o *tiered.Options) { o.Timeout = 2 * time.Second })
	ctx := context.Background()
	big := tiered.NewGroup[[]byte](c, "big", time.Minute, tiered.WithCodec(tiered.Raw{}))
	require.NoError(t, big.Err())
	small := tiered.NewGroup[string](c, "small", time.Minute)
	require.NoError(t, small.Set(ctx, "warm", "x"))

	data := make([]byte, 100<<20)
	l2Errors := c.Stats().L2Errors
	for i := range 7 {
		require.ErrorIs(t, big.Set(ctx, "k", data), tiered.ErrTooLarge, "Set #%d of 100 MB", i+1)
		st := c.Stats()
		require.Equal(t, l2Errors, st.L2Errors, "Set #%d of 100 MB went to Redis", i+1)
		require.Equal(t, "closed", fmt.Sprint(st.Breaker), "after Set #%d", i+1)
	}
	require.Zero(t, c.Stats().BreakerOpens)
	require.False(t, edgeExists(t, s, redisKey(t, big, "k")))
	require.NoError(t, small.Set(ctx, "s", "ok"))
	v, err := small.Get(ctx, "s")
	require.NoError(t, err)
	require.Equal(t, "ok", v)

	// A loaded value over the limit: returned with ErrTooLarge, not stored.
	const loaded = 20 << 20
	lv, err := big.GetOrLoad(ctx, "k20", func(context.Context) ([]byte, error) { return make([]byte, loaded), nil })
	require.ErrorIs(t, err, tiered.ErrTooLarge)
	require.Len(t, lv, loaded, "the loaded value is returned with the error")
	require.False(t, edgeExists(t, s, redisKey(t, big, "k20")))

	// Under the default limit: stored and read whole.
	three := make([]byte, 3<<20)
	for i := range three {
		three[i] = byte(i)
	}
	require.NoError(t, big.Set(ctx, "k3", three))
	got, err := big.Get(ctx, "k3")
	require.NoError(t, err)
	require.Equal(t, three, got)
	require.Equal(t, l2Errors, c.Stats().L2Errors)
}

// The limit can be set per group (WithMaxValueBytes) and per cache (Options.MaxValueBytes).
func TestMaxValueBytesOptions(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	c := newCache(t, s)
	g := tiered.NewGroup[[]byte](c, "capped", time.Minute, tiered.WithCodec(tiered.Raw{}), tiered.WithMaxValueBytes(1<<10))
	require.NoError(t, g.Err())
	require.ErrorIs(t, g.Set(ctx, "k", make([]byte, 2<<10)), tiered.ErrTooLarge, "2 KiB in a group capped at 1 KiB")
	require.NoError(t, g.Set(ctx, "k", make([]byte, 512)))

	c2 := newCache(t, s, func(o *tiered.Options) { o.MaxValueBytes = 1 << 10; o.KeyPrefix = "t2:" })
	g2 := tiered.NewGroup[[]byte](c2, "capped", time.Minute, tiered.WithCodec(tiered.Raw{}))
	require.ErrorIs(t, g2.Set(ctx, "k", make([]byte, 2<<10)), tiered.ErrTooLarge, "2 KiB in a cache capped at 1 KiB")
	require.NoError(t, g2.Set(ctx, "k", make([]byte, 512)))
}

// A huge group TTL: either Err reports an option error (and calls return it), or the value
// is stored for at least a year. Same for a huge per-call TTL.
func TestHugeTTLErrOrStored(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s, func(o *tiered.Options) { o.FailSafeMaxStale = time.Hour })
	ctx := context.Background()
	const year = int64(365 * 24 * time.Hour / time.Millisecond)

	g := tiered.NewGroup[string](c, "g", time.Duration(math.MaxInt64))
	if err := g.Err(); err != nil {
		require.ErrorIs(t, err, tiered.ErrInvalidOptions)
		require.ErrorIs(t, g.Set(ctx, "k", "v"), tiered.ErrInvalidOptions, "calls return the stored error")
	} else {
		require.NoError(t, g.Set(ctx, "k", "v"))
		ms := edgePTTL(t, s, redisKey(t, g, "k"))
		require.GreaterOrEqual(t, ms, year, "stored with PTTL %d ms", ms)
	}

	h := tiered.NewGroup[string](c, "h", time.Minute)
	require.NoError(t, h.Err())
	if err := h.Set(ctx, "k", "v", tiered.TTL(time.Duration(math.MaxInt64))); err == nil {
		ms := edgePTTL(t, s, redisKey(t, h, "k"))
		require.GreaterOrEqual(t, ms, year, "a MaxInt64 per-call TTL stored the value with PTTL %d ms", ms)
	}
}

// Err tells a refused group from a working one: another type or codec under a taken
// name is ErrInvalidOptions; the same name, type and codec again is fine.
func TestSameNameOtherTypeErr(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	ctx := context.Background()
	g1 := tiered.NewGroup[string](c, "x", 0)
	require.NoError(t, g1.Err())
	g2 := tiered.NewGroup[int](c, "x", 0)
	require.ErrorIs(t, g2.Err(), tiered.ErrInvalidOptions)
	require.ErrorIs(t, g2.Set(ctx, "k", 1), tiered.ErrInvalidOptions)
	_, err := g2.GetOrLoad(ctx, "k", func(context.Context) (int, error) { return 1, nil })
	require.ErrorIs(t, err, tiered.ErrInvalidOptions)
	require.NoError(t, g1.Err(), "the first group stays usable")

	require.NoError(t, tiered.NewGroup[[]byte](c, "y", 0).Err())
	require.ErrorIs(t, tiered.NewGroup[[]byte](c, "y", 0, tiered.WithCodec(tiered.Raw{})).Err(), tiered.ErrInvalidOptions,
		"same name and type, another codec")

	z1 := tiered.NewGroup[string](c, "z", 0)
	z2 := tiered.NewGroup[string](c, "z", 0)
	require.NoError(t, z1.Err())
	require.NoError(t, z2.Err())
}

// Constructor errors are stored and reported by Err.
func TestGroupErr(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	require.NoError(t, tiered.NewGroup[string](c, "good", 0).Err())
	for _, name := range []string{"bad name", ""} {
		g := tiered.NewGroup[string](c, name, 0)
		require.ErrorIs(t, g.Err(), tiered.ErrInvalidOptions, "group name %q", name)
		_, err := g.Get(context.Background(), "k")
		require.ErrorIs(t, err, tiered.ErrInvalidOptions, "calls on group %q", name)
	}
}

// A PanicError unwraps to the error the loader panicked with; its text is one line.
func TestPanicErrorUnwrap(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	g := tiered.NewGroup[string](c, "g", time.Minute)
	boom := errors.New("boom")
	_, err := g.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) { panic(boom) })
	var pe *tiered.PanicError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, boom, pe.Unwrap())
	require.ErrorIs(t, err, boom)
	require.NotContains(t, pe.Error(), "\n")
	require.NotEmpty(t, pe.Stack)

}

// A per-call TTL replaces the group's for that call; a negative one is an error.
func TestPerCallTTL(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	ctx := context.Background()
	g := tiered.NewGroup[string](c, "pc", time.Hour)
	require.NoError(t, g.Err())
	minute := time.Minute.Milliseconds()

	require.NoError(t, g.Set(ctx, "k", "v", tiered.TTL(time.Minute)))
	ms := edgePTTL(t, s, redisKey(t, g, "k"))
	require.Greater(t, ms, int64(0))
	require.LessOrEqual(t, ms, minute, "Set with TTL(1m) on a 1h group")
	v, err := g.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v", v)

	v, err = g.GetOrLoad(ctx, "k2", func(context.Context) (string, error) { return "loaded", nil }, tiered.TTL(time.Minute))
	require.NoError(t, err)
	require.Equal(t, "loaded", v)
	ms = edgePTTL(t, s, redisKey(t, g, "k2"))
	require.Greater(t, ms, int64(0))
	require.LessOrEqual(t, ms, minute, "GetOrLoad with TTL(1m) on a 1h group")

	require.NoError(t, g.Set(ctx, "k3", "v"))
	require.Greater(t, edgePTTL(t, s, redisKey(t, g, "k3")), minute, "without a CallOption, the group's TTL")

	require.Error(t, g.Set(ctx, "neg", "v", tiered.TTL(-1)), "TTL(-1)")
	require.False(t, edgeExists(t, s, redisKey(t, g, "neg")))
	_, err = g.GetOrLoad(ctx, "neg2", func(context.Context) (string, error) { return "x", nil }, tiered.TTL(-1))
	require.Error(t, err, "GetOrLoad with TTL(-1)")
	require.False(t, edgeExists(t, s, redisKey(t, g, "neg2")))
}

// A large value that a group allows is not an outage: calls that move it get time to, beyond
// a Timeout that would not cover the transfer.
func TestLargeValueGetsTimeToMove(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s, func(o *tiered.Options) { o.Timeout = 10 * time.Millisecond })
	ctx := context.Background()
	g := tiered.NewGroup[[]byte](c, "blobs", time.Minute, tiered.WithCodec(tiered.Raw{}), tiered.WithMaxValueBytes(64<<20))
	// The group's generation is read (a small call that a busy machine may delay past 10 ms).
	require.Eventually(t, func() bool { return g.Set(ctx, "warm", []byte("x")) == nil }, waitFor, tick)
	// 32 MiB take 60 to 700 ms to move on this machine (race detector on or off); the calls
	// get 10 ms + 28 MiB at 16 MiB/s = 1.76 s.
	big := bytes.Repeat([]byte("0123456789abcdef"), 32<<20/16)
	for range 2 {
		require.NoError(t, g.Set(ctx, "k", big))
		got, err := g.Get(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, len(big), len(got))
	}
	require.Zero(t, c.Stats().BreakerOpens)
}
