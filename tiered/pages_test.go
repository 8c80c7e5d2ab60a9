package tiered_test

// The Data API for real pages: cached misses, spread expiries, loader-chosen TTLs.

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// A missing ID reaches the loader once per NotFoundTTL, across 3 instances × 50 goroutines;
// a Set of it anywhere then replaces the cached miss at once, on every instance.
func TestCachedMisses(t *testing.T) {
	s := redistest.Start(t)
	const instances, goroutines = 3, 50
	groups := make([]*tiered.Group[string], instances)
	for i := range groups {
		c := newCache(t, s)
		groups[i] = tiered.NewGroup[string](c, "article", time.Hour, tiered.WithNotFoundTTL(time.Minute))
	}
	ctx := context.Background()
	var loads atomic.Int64
	missing := func(context.Context) (string, error) {
		loads.Add(1)
		return "", fmt.Errorf("article 404: %w", tiered.ErrNotFound)
	}
	// The first request caches the miss; every later one, on any instance, is answered from
	// it: first from Redis, then from L1.
	_, err := groups[0].GetOrLoad(ctx, "404", missing)
	require.ErrorIs(t, err, tiered.ErrNotFound)
	var wg sync.WaitGroup
	for _, g := range groups {
		for range goroutines {
			wg.Go(func() {
				for range 5 {
					_, err := g.GetOrLoad(ctx, "404", missing)
					require.ErrorIs(t, err, tiered.ErrNotFound)
					_, err = g.Get(ctx, "404")
					require.ErrorIs(t, err, tiered.ErrNotFound)
				}
			})
		}
	}
	wg.Wait()
	require.EqualValues(t, 1, loads.Load(), "the loader ran once for 1,501 requests of a missing ID")
	for _, g := range groups {
		warm404 := func() bool { _, err := g.Get(ctx, "404"); return err != nil }
		require.Eventually(t, warm404, waitFor, tick)
	}

	require.NoError(t, groups[1].Set(ctx, "404", "now it exists"))
	for i, g := range groups {
		require.Eventually(t, func() bool { v, err := g.Get(ctx, "404"); return err == nil && v == "now it exists" }, waitFor, tick,
			"instance %d still serves the cached miss", i)
	}
	require.EqualValues(t, 1, loads.Load())
}

// WithTTLJitter spreads the TTLs of keys stored together over [ttl×(1−f), ttl].
func TestTTLJitterSpreadsExpiries(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s, func(o *tiered.Options) { o.DisableL1 = true })
	ctx := context.Background()
	const keys, ttl, f = 10_000, time.Hour, 0.2
	g := tiered.NewGroup[int](c, "spread", ttl, tiered.WithTTLJitter(f))
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Go(func() {
			for i := w; i < keys; i += 20 {
				require.NoError(t, g.Set(ctx, strconv.Itoa(i), i))
			}
		})
	}
	wg.Wait()
	ttls := make([]time.Duration, 0, keys)
	for i := 0; i < keys; i += 10 {
		ms, err := s.Do("PTTL", redisKey(t, g, strconv.Itoa(i))).AsInt64()
		require.NoError(t, err)
		ttls = append(ttls, time.Duration(ms)*time.Millisecond)
	}
	slices.Sort(ttls)
	lo, hi := ttls[0], ttls[len(ttls)-1]
	require.GreaterOrEqual(t, lo, time.Duration(float64(ttl)*(1-f))-time.Minute)
	require.LessOrEqual(t, hi, ttl)
	require.Greater(t, hi-lo, time.Duration(float64(ttl)*f*0.9), "spread over the window: %v to %v", lo, hi)
	// Evenly: each tenth of the window holds about a tenth of the keys.
	window := time.Duration(float64(ttl) * f)
	counts := make([]int, 10)
	for _, d := range ttls {
		counts[min(int(float64(ttl-d)/float64(window)*10), 9)]++
	}
	for i, n := range counts {
		require.InDelta(t, len(ttls)/10, n, float64(len(ttls))/10*0.5, "tenth %d of the window holds %d of %d", i, n, len(ttls))
	}
}

// A loader chooses the TTL of what it returns, or that it not be cached at all.
func TestLoaderChosenTTL(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	ctx := context.Background()
	g := tiered.NewGroup[string](c, "g", time.Hour)
	v, err := g.GetOrLoad(ctx, "volatile", func(ctx context.Context) (string, error) {
		tiered.CacheFor(ctx, 2*time.Second)
		return "v", nil
	})
	require.NoError(t, err)
	require.Equal(t, "v", v)
	ms, err := s.Do("PTTL", redisKey(t, g, "volatile")).AsInt64()
	require.NoError(t, err)
	require.LessOrEqual(t, ms, int64(2000))
	require.Positive(t, ms)

	var loads atomic.Int64
	dontCache := func(ctx context.Context) (string, error) {
		loads.Add(1)
		tiered.DoNotCache(ctx)
		return "fresh", nil
	}
	for range 3 {
		v, err := g.GetOrLoad(ctx, "uncached", dontCache)
		require.NoError(t, err)
		require.Equal(t, "fresh", v, "the value is still returned")
	}
	require.EqualValues(t, 3, loads.Load(), "nothing was cached")
	n, err := s.Do("EXISTS", redisKey(t, g, "uncached")).AsInt64()
	require.NoError(t, err)
	require.Zero(t, n)
	tiered.CacheFor(ctx, time.Second) // outside a loader: nothing happens
	tiered.DoNotCache(ctx)
}

// A page of keys: L1 first, then one pipeline to Redis, then one loader call for the rest,
// whose values are stored and served from L1 next time.
func TestGetOrLoadMany(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	ctx := context.Background()
	g := tiered.NewGroup[string](c, "articles", time.Hour, tiered.WithNotFoundTTL(time.Minute))
	require.NoError(t, g.Set(ctx, "1", "one"))
	warm(t, c, g, "1")                         // in L1
	require.NoError(t, g.Set(ctx, "2", "two")) // in Redis only
	var calls atomic.Int64
	var asked []string
	load := func(_ context.Context, missing []string) (map[string]string, error) {
		calls.Add(1)
		asked = slices.Clone(missing)
		out := map[string]string{}
		for _, k := range missing {
			if k != "404" {
				out[k] = "loaded " + k
			}
		}
		return out, nil
	}
	keys := []string{"1", "2", "3", "4", "404", "3"}
	got, err := g.GetOrLoadMany(ctx, keys, load)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"1": "one", "2": "two", "3": "loaded 3", "4": "loaded 4"}, got)
	require.EqualValues(t, 1, calls.Load())
	slices.Sort(asked)
	require.Equal(t, []string{"3", "4", "404"}, asked, "each missing key once")

	got, err = g.GetOrLoadMany(ctx, keys, load)
	require.NoError(t, err)
	require.Len(t, got, 4)
	require.EqualValues(t, 1, calls.Load(), "everything is cached now, the miss of 404 too")
	_, err = g.Get(ctx, "404")
	require.ErrorIs(t, err, tiered.ErrNotFound)
	for _, k := range []string{"3", "4"} {
		warm(t, c, g, k) // the loaded values reach L1
	}

	all, err := g.GetMany(ctx, []string{"1", "2", "3", "404", "nope"})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"1": "one", "2": "two", "3": "loaded 3"}, all)
	_, err = g.GetMany(ctx, []string{"1", ""})
	require.ErrorIs(t, err, tiered.ErrInvalidOptions)
}

// A key that a concurrent GetOrLoad is loading is waited for, not loaded again, and a
// GetOrLoad of a key a batch is loading gets the batch's value.
func TestGetOrLoadManySharesLoads(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	ctx := context.Background()
	g := tiered.NewGroup[string](c, "shared", time.Hour)
	release := make(chan struct{})
	singleStarted := make(chan struct{})
	var loadsOfA atomic.Int64
	go func() {
		_, _ = g.GetOrLoad(ctx, "a", func(context.Context) (string, error) {
			loadsOfA.Add(1)
			close(singleStarted)
			<-release
			return "a by GetOrLoad", nil
		})
	}()
	<-singleStarted
	done := make(chan map[string]string)
	go func() {
		got, err := g.GetOrLoadMany(ctx, []string{"a", "b"}, func(_ context.Context, missing []string) (map[string]string, error) {
			for _, k := range missing {
				if k == "a" {
					loadsOfA.Add(1)
				}
			}
			<-release
			return map[string]string{"a": "a by the batch", "b": "b by the batch"}, nil
		})
		require.NoError(t, err)
		done <- got
	}()
	require.Eventually(t, func() bool { return c.Stats().LoadsShared >= 1 }, waitFor, tick)
	close(release)
	got := <-done
	require.Equal(t, "a by GetOrLoad", got["a"], "the batch waited for the load in flight")
	require.Equal(t, "b by the batch", got["b"])
	require.EqualValues(t, 1, loadsOfA.Load())
}

// Redis down: the loader serves everything; a loader error leaves what the tiers had.
func TestGetOrLoadManyPartialFailures(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s, func(o *tiered.Options) { o.Timeout = 50 * time.Millisecond })
	ctx := context.Background()
	g := tiered.NewGroup[string](c, "partial", time.Hour)
	require.NoError(t, g.Set(ctx, "1", "one"))
	boom := fmt.Errorf("db down")
	got, err := g.GetOrLoadMany(ctx, []string{"1", "2"}, func(context.Context, []string) (map[string]string, error) { return nil, boom })
	require.ErrorIs(t, err, boom)
	require.Equal(t, map[string]string{"1": "one"}, got, "what Redis had")

	s.Stop()
	got, err = g.GetOrLoadMany(ctx, []string{"1", "2", "3"}, func(_ context.Context, missing []string) (map[string]string, error) {
		out := map[string]string{}
		for _, k := range missing {
			out[k] = "db " + k
		}
		return out, nil
	})
	require.NoError(t, err)
	require.Len(t, got, 3, "with Redis down the loader serves everything: %v", got)
	_, err = g.GetMany(ctx, []string{"9"})
	require.ErrorIs(t, err, tiered.ErrUnavailable)
}

// Past a soft timeout, a slow loader's caller gets the fail-safe value while the load goes
// on and refreshes the entry; past a hard timeout, without one, an ErrLoadTimeout.
func TestSoftAndHardLoaderTimeouts(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s, func(o *tiered.Options) { o.FailSafeMaxStale = time.Hour })
	ctx := context.Background()
	g := tiered.NewGroup[string](c, "slow", 300*time.Millisecond,
		tiered.WithSoftTimeout(30*time.Millisecond), tiered.WithHardTimeout(time.Second))
	require.NoError(t, g.Set(ctx, "k", "old"))
	require.Eventually(t, func() bool { _, err := g.Get(ctx, "k"); return err != nil }, 5*time.Second, tick, "past its TTL")

	release := make(chan struct{})
	v, err := g.GetOrLoad(ctx, "k", func(context.Context) (string, error) { <-release; return "new", nil })
	require.NoError(t, err)
	require.Equal(t, "old", v, "the fail-safe value, past the soft timeout")
	require.Positive(t, c.Stats().FailSafeServed)
	close(release)
	require.Eventually(t, func() bool { v, err := g.Get(ctx, "k"); return err == nil && v == "new" }, waitFor, tick,
		"the load went on in the background and refreshed the entry")

	cold := tiered.NewGroup[string](c, "cold", time.Minute, tiered.WithHardTimeout(50*time.Millisecond))
	loaderCtx := make(chan context.Context, 1)
	_, err = cold.GetOrLoad(ctx, "k", func(lctx context.Context) (string, error) {
		loaderCtx <- lctx
		<-lctx.Done()
		return "", lctx.Err()
	})
	require.ErrorIs(t, err, tiered.ErrLoadTimeout)
	require.Contains(t, err.Error(), "50ms")
	select {
	case <-(<-loaderCtx).Done(): // abandoned: its context ended
	case <-time.After(waitFor):
		t.Fatal("the abandoned load's context did not end")
	}
}
