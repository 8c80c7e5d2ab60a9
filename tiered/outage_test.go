package tiered_test

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/counter"
	"github.com/synspirit/tiercache/internal/faultproxy"
	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// During an outage that swallows every packet (the worst kind: each call waits out its
// deadline), counters built on the cache share its breaker: after BreakerThreshold calls
// have waited, the rest fail at once. Loads of a cold key stay shared, and Close leaves no
// goroutine behind. The figures go to RELIABILITY.md.
func TestFaultOutage(t *testing.T) {
	s := redistest.Start(t)
	proxy := faultproxy.Start(t, s.Addr())
	baseline := runtime.NumGoroutine()
	const timeout = 100 * time.Millisecond
	c, err := tiered.New(context.Background(), tiered.Options{
		RedisURL: "redis://" + proxy.Addr() + "/0", KeyPrefix: "t:", Timeout: timeout, BreakerCooldown: time.Minute,
	})
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = c.Close()
		}
	})
	likes := counter.FromCache(c, counter.Options{})
	key := counter.Key{Target: "article", ID: "1", Counter: "likes"}
	ctx := context.Background()
	_, err = likes.Increment(ctx, key, 1)
	require.NoError(t, err)
	g := tiered.NewGroup[string](c, "cold", time.Minute)

	// Two loads that only Close will end: a counter's and a group's, each blocking until its
	// context is done.
	var inFlight sync.WaitGroup
	loading := make(chan string, 2)
	inFlight.Add(2)
	go func() {
		defer inFlight.Done()
		_, err := likes.GetOrLoad(ctx, counter.Key{Target: "article", ID: "2", Counter: "likes"}, func(lctx context.Context) (int64, error) {
			loading <- "counter"
			<-lctx.Done()
			return 0, lctx.Err()
		})
		require.ErrorIs(t, err, tiered.ErrClosed, "the cache closed under it")
	}()
	go func() {
		defer inFlight.Done()
		_, err := g.GetOrLoad(ctx, "until-close", func(lctx context.Context) (string, error) {
			loading <- "group"
			<-lctx.Done()
			return "", lctx.Err()
		})
		require.ErrorIs(t, err, tiered.ErrClosed, "the cache closed under it")
	}()
	<-loading
	<-loading

	proxy.SetBlackhole(true)
	const increments = 50
	waits := make([]time.Duration, increments)
	for i := range waits {
		start := time.Now()
		_, err := likes.Increment(ctx, key, 1)
		waits[i] = time.Since(start)
		require.ErrorIs(t, err, counter.ErrUnavailable, "increment %d", i)
	}
	require.Positive(t, c.Stats().BreakerOpens, "counter failures open the cache's breaker")
	waited := 0
	for _, w := range waits {
		if w >= timeout {
			waited++
		}
	}
	require.LessOrEqual(t, waited, tiered.DefaultBreakerThreshold+1, "once the breaker is open, increments do not wait")
	sorted := slices.Clone(waits)
	slices.Sort(sorted)

	// 100 concurrent GetOrLoad calls of one cold key, with Redis unreachable, share one load.
	const callers = 100
	var loads atomic.Int64
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := g.GetOrLoad(ctx, "k", func(context.Context) (string, error) {
				loads.Add(1)
				<-release
				return "from the database", nil
			})
			require.NoError(t, err)
			require.Equal(t, "from the database", v)
		}()
	}
	require.Eventually(t, func() bool { return loads.Load() == 1 && c.Stats().LoadsShared == callers-1 }, 5*time.Second, tick)
	close(release)
	wg.Wait()
	require.EqualValues(t, 1, loads.Load())

	// Close cancels the loads in flight and waits for them.
	proxy.SetBlackhole(false)
	require.NoError(t, c.Close())
	closed = true
	inFlight.Wait()
	proxy.Close()
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= baseline }, 5*time.Second, tick,
		"goroutines after Close: %d, before New: %d", runtime.NumGoroutine(), baseline)
	_, err = likes.Increment(ctx, key, 1)
	require.ErrorIs(t, err, counter.ErrClosed)

	reliability(t, "outage", map[string]any{
		"increments":             increments,
		"increments that waited": waited,
		"increment p50 ms":       float64(sorted[increments/2].Microseconds()) / 1000,
		"increment max ms":       float64(sorted[increments-1].Microseconds()) / 1000,
		"deadline ms":            timeout.Milliseconds(),
		"cold key callers":       callers,
		"loads for the cold key": loads.Load(),
		"goroutines after close": max(runtime.NumGoroutine()-baseline, 0),
	})
}
