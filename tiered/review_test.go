package tiered_test

// Findings of a review from outside: each test failed on the code it was written against.

import (
	"context"
	"errors"
	"math"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// A loader that panics during an eager refresh is a refresh error, not a crash.
func TestEagerRefreshPanicIsARefreshError(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s, func(o *tiered.Options) { o.EagerRefresh = 0.5 })
	g := tiered.NewGroup[int](c, "eager", 400*time.Millisecond)
	ctx := context.Background()
	var calls atomic.Int32
	load := func(context.Context) (int, error) {
		if calls.Add(1) > 1 {
			panic("refresh loader bug")
		}
		return 1, nil
	}
	_, err := g.GetOrLoad(ctx, "k", load)
	require.NoError(t, err)
	warm(t, c, g, "k")
	require.Eventually(t, func() bool {
		v, err := g.GetOrLoad(ctx, "k", load)
		return err == nil && v == 1 && c.Stats().RefreshErrors > 0
	}, 5*time.Second, tick, "the panicking refresh is counted and the process survives")
}

// A huge L1MaxBytes ("unbounded") is neither a panic nor a large allocation up front.
func TestHugeL1MaxBytes(t *testing.T) {
	s := redistest.Start(t)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := newCache(t, s, func(o *tiered.Options) { o.L1MaxBytes = math.MaxInt64 })
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	assert.Less(t, grown, int64(64<<20), "an empty cache allocated %d MiB", grown>>20)
	g := tiered.NewGroup[string](c, "g", time.Minute)
	require.NoError(t, g.Set(context.Background(), "k", "v"))
	warm(t, c, g, "k")
}

// A value in Redis larger than this instance's group allows (written by an instance with a
// higher limit, or by anything else) is a miss here, read without moving it: no timeout, no
// breaker failure, and other keys keep working.
func TestOversizeValueInRedisIsAMiss(t *testing.T) {
	s := redistest.Start(t)
	big := newCache(t, s)
	small := newCache(t, s, func(o *tiered.Options) { o.Timeout = 50 * time.Millisecond; o.BreakerThreshold = 2 })
	ctx := context.Background()
	writer := tiered.NewGroup[[]byte](big, "blobs", time.Minute, tiered.WithCodec(tiered.Raw{}), tiered.WithMaxValueBytes(128<<20))
	reader := tiered.NewGroup[[]byte](small, "blobs", time.Minute, tiered.WithCodec(tiered.Raw{}), tiered.WithMaxValueBytes(1<<10))
	other := tiered.NewGroup[string](small, "other", time.Minute)
	require.NoError(t, writer.Set(ctx, "big", make([]byte, 64<<20)))
	for range 5 {
		_, err := reader.Get(ctx, "big")
		require.ErrorIs(t, err, tiered.ErrNotFound, "too large for this group: a miss")
		require.NotErrorIs(t, err, tiered.ErrUnavailable)
	}
	v, err := reader.GetOrLoad(ctx, "big", func(context.Context) ([]byte, error) { return []byte("small"), nil })
	require.NoError(t, err)
	require.Equal(t, []byte("small"), v, "the loader's value replaces it")
	require.NoError(t, other.Set(ctx, "k", "v"))
	_, err = other.Get(ctx, "k")
	require.NoError(t, err)
	require.Zero(t, small.Stats().BreakerOpens)
	require.Positive(t, small.Stats().TooLarge)
}

// One dropped connection fails every call in flight on it at once: that is not an outage,
// and does not open the breaker.
func TestOneDroppedConnectionDoesNotOpenTheBreaker(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s, func(o *tiered.Options) { o.DisableL1 = true; o.BreakerCooldown = time.Minute })
	g := tiered.NewGroup[int](c, "g", time.Hour)
	ctx := context.Background()
	require.NoError(t, g.Set(ctx, "k", 1))
	for range 3 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() }) // also when a require fails
		defer stopWriters()
		var ok atomic.Int64
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if g.Set(ctx, "k", 1) == nil {
						ok.Add(1)
					}
				}
			}()
		}
		require.Eventually(t, func() bool { return ok.Load() > 1000 }, waitFor, tick)
		s.KillClients("TYPE", "normal")
		before := ok.Load()
		require.Eventually(t, func() bool { return ok.Load() > before+1000 }, waitFor, tick, "writes go on after the reconnection")
		stopWriters()
	}
	require.Zero(t, c.Stats().BreakerOpens)
}

// Durations beyond MaxTTL are refused, never wrapped: a Timeout of MaxInt64 is not a way to say
// "no deadline" that later times out at once.
func TestHugeDurationsAreRefused(t *testing.T) {
	for name, o := range map[string]tiered.Options{
		"Timeout":         {Timeout: math.MaxInt64},
		"BreakerCooldown": {BreakerCooldown: math.MaxInt64},
	} {
		_, err := tiered.New(context.Background(), o)
		require.ErrorIs(t, err, tiered.ErrInvalidOptions, name)
		require.Contains(t, err.Error(), name)
	}
}

// A load cancelled by Close is reported as the cache closing, not as the caller's own
// cancellation.
func TestLoadCancelledByCloseIsErrClosed(t *testing.T) {
	s := redistest.Start(t)
	c, err := tiered.New(context.Background(), tiered.Options{ExactL1Stats: true, RedisURL: s.URL(), KeyPrefix: "t:"})
	require.NoError(t, err)
	g := tiered.NewGroup[string](c, "g", time.Minute)
	loading := make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := g.GetOrLoad(context.Background(), "k", func(lctx context.Context) (string, error) {
			close(loading)
			<-lctx.Done()
			return "", lctx.Err()
		})
		done <- err
	}()
	<-loading
	require.NoError(t, c.Close())
	err = <-done
	require.ErrorIs(t, err, tiered.ErrClosed)
	require.NotErrorIs(t, err, context.Canceled, "the caller cancelled nothing")
}

// A loader's panic is a load error: counted, and fail-safe serves the last value for it.
func TestLoaderPanicIsALoadError(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s, func(o *tiered.Options) { o.FailSafeMaxStale = time.Minute })
	g := tiered.NewGroup[int](c, "g", time.Second)
	ctx := context.Background()
	v, err := g.GetOrLoad(ctx, "k", func(context.Context) (int, error) { return 1, nil })
	require.NoError(t, err)
	require.Equal(t, 1, v)
	warm(t, c, g, "k")
	errorsBefore := c.Stats().LoadErrors
	require.Eventually(t, func() bool {
		v, err := g.GetOrLoad(ctx, "k", func(context.Context) (int, error) { panic("db driver bug") })
		return err == nil && v == 1 && c.Stats().FailSafeServed > 0
	}, 5*time.Second, tick, "past its TTL, a panicking loader gets the stale value")
	require.Greater(t, c.Stats().LoadErrors, errorsBefore, "and the panic is counted as a load error")
}

// Errors read once: one line, the package prefix once, whatever went wrong.
func TestErrorTextsReadOnce(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s, func(o *tiered.Options) { o.FailSafeMaxStale = time.Hour })
	ctx := context.Background()
	g := tiered.NewGroup[string](c, "arts", time.Minute)
	raw := tiered.NewGroup[[]byte](c, "raw", time.Minute, tiered.WithCodec(tiered.Raw{}))
	s.Do("SET", redisKey(t, g, "stale"), string(tiered.EnvelopeForTest([]byte(`"v"`), time.Now().Add(-time.Minute).UnixMilli())))
	s.Do("SET", redisKey(t, g, "expired"), string(tiered.EnvelopeForTest([]byte(`"v"`), time.Now().Add(-2*time.Hour).UnixMilli())))
	_, errStale := g.Get(ctx, "stale")
	_, errExpired := g.Get(ctx, "expired")
	_, errNil := g.GetOrLoad(ctx, "k", nil)
	_, errLoader := g.GetOrLoad(ctx, "k2", func(context.Context) (string, error) { return "", errors.New("db down") })
	_, errNew := tiered.New(ctx, tiered.Options{DefaultTTL: -1, L1MaxBytes: -1})
	badGroup := tiered.NewGroup[int](c, "bad name", -1, tiered.WithL1MaxEntryBytes(-1), tiered.WithMaxValueBytes(-1))
	for name, tc := range map[string]struct {
		err  error
		want error
	}{
		"negative TTL(d)":     {g.Set(ctx, "k", "v", tiered.TTL(-1)), tiered.ErrInvalidOptions},
		"stale":               {errStale, tiered.ErrNotFound},
		"expired":             {errExpired, tiered.ErrNotFound},
		"Raw codec, bad type": {tiered.NewGroup[int](c, "rawint", 0, tiered.WithCodec(tiered.Raw{})).Err(), tiered.ErrInvalidOptions},
		"Raw value too large": {raw.Set(ctx, "k", make([]byte, 5<<20)), tiered.ErrTooLarge},
		"empty key":           {g.Set(ctx, "", "v"), tiered.ErrInvalidOptions},
		"nil loader":          {errNil, tiered.ErrInvalidOptions},
		"loader error":        {errLoader, nil},
		"bad options":         {errNew, tiered.ErrInvalidOptions},
		"bad group":           {badGroup.Err(), tiered.ErrInvalidOptions},
	} {
		require.Error(t, tc.err, name)
		if tc.want != nil {
			require.ErrorIs(t, tc.err, tc.want, name)
		}
		text := tc.err.Error()
		assert.NotContains(t, text, "\n", "%s: one line: %q", name, text)
		assert.Len(t, regexp.MustCompile(`(^|: )tiered: `).FindAllString(text, -1), 1, "%s: the prefix once: %q", name, text)
		assert.True(t, strings.HasPrefix(text, "tiered: "), "%s: %q", name, text)
	}
	require.Contains(t, errLoader.Error(), "db down")

	// New under a context that is already done: the caller's error, not an outage.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err := tiered.New(cancelled, tiered.Options{ExactL1Stats: true, RedisURL: s.URL()})
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, tiered.ErrUnavailable)

	// The calls that wrap an outage name the package once too.
	s.Stop()
	_, errInfo := c.RedisInfo(ctx)
	for name, err := range map[string]error{
		"InvalidateTags": c.InvalidateTags(ctx, "t"),
		"RedisInfo":      errInfo,
		"Flush":          c.Flush(ctx),
	} {
		require.ErrorIs(t, err, tiered.ErrUnavailable, name)
		text := err.Error()
		assert.Len(t, regexp.MustCompile(`(^|: )tiered: `).FindAllString(text, -1), 1, "%s: the prefix once: %q", name, text)
	}
}
