package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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

func TestBadOptionsAreErrors(t *testing.T) {
	ctx := context.Background()
	for name, o := range map[string]tiered.Options{
		"negative ttl":     {DefaultTTL: -1},
		"negative l1":      {L1MaxBytes: -1},
		"negative timeout": {Timeout: -time.Second},
		"unknown mode":     {Invalidation: 42},
		"bad scheme":       {RedisURL: "http://localhost:6379"},
		"bad db":           {RedisURL: "redis://127.0.0.1:1/notadb"},
		"bad ssl":          {RedisURL: "redis://127.0.0.1:1/0?ssl=maybe"},
		"space in prefix":  {KeyPrefix: "a b"},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := tiered.New(ctx, o)
			require.ErrorIs(t, err, tiered.ErrInvalidOptions)
			require.Nil(t, c)
		})
	}
}

func TestBadURLDoesNotLeakPassword(t *testing.T) {
	_, err := tiered.New(context.Background(), tiered.Options{ExactL1Stats: true, RedisURL: "redis://user:s3cret@127.0.0.1:1/x"})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
	_, err = tiered.New(context.Background(), tiered.Options{ExactL1Stats: true, RedisURL: "redis://user:s3cret@[::1"})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
}

func TestParseRedisURL(t *testing.T) {
	o, err := tiered.ParseRedisURL("redis://u:p@127.0.0.1:7000/3?ssl=true")
	require.NoError(t, err)
	require.NotNil(t, o.TLSConfig, "ssl=true is an alias of rediss://")
	require.Equal(t, "u", o.Username)
	require.Equal(t, "p", o.Password)
	require.Equal(t, 3, o.SelectDB)
	require.Equal(t, []string{"127.0.0.1:7000"}, o.InitAddress)

	o, err = tiered.ParseRedisURL("rediss://127.0.0.1:7000")
	require.NoError(t, err)
	require.NotNil(t, o.TLSConfig)

	o, err = tiered.ParseRedisURL("redis://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"}, o.InitAddress)

	o, err = tiered.ParseRedisURL("redis://127.0.0.1:26379?master_set=mymaster&protocol=2")
	require.NoError(t, err)
	require.Equal(t, "mymaster", o.Sentinel.MasterSet)
	require.True(t, o.AlwaysRESP2)
}

func TestNewFromEnv(t *testing.T) {
	s := redistest.Start(t)
	t.Setenv("REDIS_URL", s.URL())
	t.Setenv("CACHE_KEY_PREFIX", "env:")
	t.Setenv("CACHE_DEFAULT_TIMEOUT", "7")
	c, err := tiered.NewFromEnv(context.Background())
	require.NoError(t, err)
	defer c.Close()
	g := tiered.NewGroup[string](c, "g", 0)
	require.Equal(t, 7*time.Second, g.TTL())
	require.NoError(t, g.Set(context.Background(), "k", "v"))
	ttl, err := s.Do("PTTL", redisKey(t, g, "k")).AsInt64()
	require.NoError(t, err)
	require.InDelta(t, 7000, ttl, 1000)

	t.Setenv("CACHE_DEFAULT_TIMEOUT", "soon")
	_, err = tiered.NewFromEnv(context.Background())
	require.ErrorIs(t, err, tiered.ErrInvalidOptions)
}

func TestUnreachableRedisFailsNew(t *testing.T) {
	port, err := redistest.FreePort()
	require.NoError(t, err)
	_, err = tiered.New(context.Background(), tiered.Options{ExactL1Stats: true, RedisURL: fmt.Sprintf("redis://127.0.0.1:%d", port)})
	require.ErrorIs(t, err, tiered.ErrUnavailable)
}

func TestCloseIsIdempotentAndLaterCallsFail(t *testing.T) {
	s := redistest.Start(t)
	c, err := tiered.New(context.Background(), tiered.Options{ExactL1Stats: true, RedisURL: s.URL()})
	require.NoError(t, err)
	g := tiered.NewGroup[int](c, "g", time.Minute)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close())
	_, err = g.Get(context.Background(), "k")
	require.ErrorIs(t, err, tiered.ErrClosed)
	v, err := g.GetOrLoad(context.Background(), "k", func(context.Context) (int, error) { return 9, nil })
	require.NoError(t, err, "GetOrLoad still serves through the loader")
	require.Equal(t, 9, v)
}

func TestCloseWithLoadInFlightCancelsAndWaits(t *testing.T) {
	s := redistest.Start(t)
	c, err := tiered.New(context.Background(), tiered.Options{ExactL1Stats: true, RedisURL: s.URL()})
	require.NoError(t, err)
	g := tiered.NewGroup[int](c, "g", time.Minute)
	started := make(chan struct{})
	var loaderSawCancel atomic.Bool
	go func() {
		_, _ = g.GetOrLoad(context.Background(), "k", func(ctx context.Context) (int, error) {
			close(started)
			<-ctx.Done()
			loaderSawCancel.Store(true)
			return 0, ctx.Err()
		})
	}()
	<-started
	require.NoError(t, c.Close())
	require.True(t, loaderSawCancel.Load(), "Close returned before the load it cancelled")
}

func TestGetSetDelete(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	ctx := context.Background()
	g := tiered.NewGroup[article](c, "data:articles", time.Minute)

	_, err := g.Get(ctx, "1")
	require.ErrorIs(t, err, tiered.ErrNotFound)

	require.NoError(t, g.Set(ctx, "1", article{1, "one"}))
	got, err := g.Get(ctx, "1")
	require.NoError(t, err)
	require.Equal(t, article{1, "one"}, got)
	require.Regexp(t, `^t:data:articles@[0-9a-z]{1,13}:1$`, redisKey(t, g, "1"))
	n, err := s.Do("EXISTS", redisKey(t, g, "1")).AsInt64()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "stored under <prefix><group>@<generation>:<key>")

	require.NoError(t, g.Delete(ctx, "1"))
	_, err = g.Get(ctx, "1")
	require.ErrorIs(t, err, tiered.ErrNotFound)

	_, err = g.Get(ctx, "")
	require.Error(t, err, "empty key")
}

func TestGetOrLoadRunsTheLoaderOnceFor100Callers(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	g := tiered.NewGroup[article](c, "data:articles", time.Minute)
	var calls atomic.Int32
	release := make(chan struct{})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	var wg sync.WaitGroup
	results := make([]article, 100)
	errs := make([]error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = g.GetOrLoad(context.Background(), "cold", func(context.Context) (article, error) {
				calls.Add(1)
				<-release
				return article{7, "seven"}, nil
			})
		}()
	}
	require.Eventually(t, func() bool { return calls.Load() == 1 && c.Stats().LoadsShared == 99 }, 5*time.Second, tick)
	releaseOnce.Do(func() { close(release) })
	wg.Wait()
	require.EqualValues(t, 1, calls.Load())
	for i := range 100 {
		require.NoError(t, errs[i])
		require.Equal(t, article{7, "seven"}, results[i])
	}
	// And it is cached: no further load.
	v, err := g.GetOrLoad(context.Background(), "cold", func(context.Context) (article, error) {
		t.Fatal("loader called on a cached key")
		return article{}, nil
	})
	require.NoError(t, err)
	require.Equal(t, article{7, "seven"}, v)
}

func TestGetOrLoadWaiterGivesUpWithoutCancellingOthers(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	g := tiered.NewGroup[int](c, "g", time.Minute)
	release := make(chan struct{})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	loaderCtxErr := make(chan error, 1)
	started := make(chan struct{})
	load := func(ctx context.Context) (int, error) {
		close(started)
		<-release
		loaderCtxErr <- ctx.Err()
		return 42, nil
	}
	patient := make(chan int, 1)
	go func() {
		v, err := g.GetOrLoad(context.Background(), "k", load)
		assert.NoError(t, err)
		patient <- v
	}()
	<-started
	impatient, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := g.GetOrLoad(impatient, "k", load)
		done <- err
	}()
	require.Eventually(t, func() bool { return c.Stats().LoadsShared == 1 }, waitFor, tick)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	releaseOnce.Do(func() { close(release) })
	require.Equal(t, 42, <-patient)
	require.NoError(t, <-loaderCtxErr, "the load's context must outlive a waiter that gave up")
}

func TestGetOrLoadErrorsAreNotCached(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	g := tiered.NewGroup[int](c, "g", time.Minute)
	boom := errors.New("db down")
	_, err := g.GetOrLoad(context.Background(), "k", func(context.Context) (int, error) { return 0, boom })
	require.ErrorIs(t, err, boom)
	v, err := g.GetOrLoad(context.Background(), "k", func(context.Context) (int, error) { return 5, nil })
	require.NoError(t, err)
	require.Equal(t, 5, v)
	require.EqualValues(t, 1, c.Stats().LoadErrors)
}

func TestGetOrLoadPanicBecomesAnErrorForEveryWaiter(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	g := tiered.NewGroup[int](c, "g", time.Minute)
	release := make(chan struct{})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = g.GetOrLoad(context.Background(), "k", func(context.Context) (int, error) {
				<-release
				panic("loader bug")
			})
		}()
	}
	require.Eventually(t, func() bool { return c.Stats().LoadsShared == 9 }, waitFor, tick)
	releaseOnce.Do(func() { close(release) })
	wg.Wait()
	for _, err := range errs {
		var pe *tiered.PanicError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, "loader bug", pe.Value)
	}
}

func TestCorruptValueIsAMissLoggedAndCounted(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	g := tiered.NewGroup[article](c, "g", time.Minute)
	ctx := context.Background()
	for i, raw := range []string{"", "plain text", "\xc7\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00{not json", "\xc7\x09garbage-from-the-future"} {
		key := fmt.Sprint("k", i)
		s.Do("SET", redisKey(t, g, key), raw)
		_, err := g.Get(ctx, key)
		require.ErrorIs(t, err, tiered.ErrNotFound)
		v, err := g.GetOrLoad(ctx, key, func(context.Context) (article, error) { return article{ID: i}, nil })
		require.NoError(t, err)
		require.Equal(t, i, v.ID, "a corrupt value is replaced by the loader's")
	}
	// Three of them are decoding errors, counted twice each (Get, then GetOrLoad's read); the
	// empty string reads as a missing key (values are read with GETRANGE, which answers ""
	// for both, and no envelope is empty).
	require.EqualValues(t, 6, c.Stats().DecodeErrors)
	s.Do("RPUSH", redisKey(t, g, "list"), "x")
	_, err := g.Get(ctx, "list")
	require.Error(t, err, "WRONGTYPE is an error, not a panic")
	require.NotErrorIs(t, err, tiered.ErrUnavailable)
}

func TestBadInput(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s, func(o *tiered.Options) { o.Timeout = 10 * time.Second }) // big values on a busy machine
	ctx := context.Background()
	g := tiered.NewGroup[string](c, "g", time.Minute)

	// Keys are binary-safe: control characters, spaces and non-UTF-8 bytes round-trip.
	for _, key := range []string{"a\x00b", "line\nbreak", "tab\t", "\xff\xfe", "sp ace", "ключ"} {
		require.NoError(t, g.Set(ctx, key, "v:"+strconv.Quote(key)))
		v, err := g.Get(ctx, key)
		require.NoError(t, err)
		require.Equal(t, "v:"+strconv.Quote(key), v)
	}
	// A large value (8 MiB) is stored and read whole by a group that allows it; the default
	// limit refuses it.
	big := strings.Repeat("x", 8<<20)
	require.ErrorIs(t, g.Set(ctx, "big", big), tiered.ErrTooLarge)
	gb := tiered.NewGroup[string](c, "g", time.Minute, tiered.WithMaxValueBytes(16<<20))
	require.NoError(t, gb.Set(ctx, "big", big))
	v, err := gb.Get(ctx, "big")
	require.NoError(t, err)
	require.Len(t, v, len(big))

	// Bad group names and values give errors, not panics.
	for _, name := range []string{"", "a b", "x\ny", "a@b"} {
		_, err := tiered.NewGroup[int](c, name, time.Minute).Get(ctx, "k")
		require.Error(t, err, "group name %q", name)
	}
	_, err = tiered.NewGroup[int](c, "neg", -time.Second).Get(ctx, "k")
	require.Error(t, err)
	require.Error(t, tiered.NewGroup[func()](c, "fn", time.Minute).Set(ctx, "k", func() {}), "unencodable value")
	require.Error(t, tiered.NewGroup[int](c, "raw", time.Minute, tiered.WithCodec(tiered.Raw{})).Set(ctx, "k", 1))
}
