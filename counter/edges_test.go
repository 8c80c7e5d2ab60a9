package counter

// Behaviour at the edges: panicking and abandoned loads, the caller's own deadline, the
// cache's breaker and lifetime, errors as users read them.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// edgeChildEnv marks a test binary re-executed by edgeInChild.
const edgeChildEnv = "TIERCACHE_TEST_CHILD"

// edgeInChild runs test name in a child process of the test binary and requires it to pass.
// It returns true in the child, where the caller then runs the test body: a panic on a
// goroutine of the library's own kills the process, which must not take the other tests
// with it.
func edgeInChild(t *testing.T, name string) (inChild bool) {
	t.Helper()
	if os.Getenv(edgeChildEnv) == "1" {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), edgeChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	text := string(out)
	if len(text) > 4000 {
		text = text[:4000] + "\n…"
	}
	require.NoError(t, err, "the child test process died (the process did not survive the loader's panic):\n%s", text)
	require.Contains(t, text, "--- PASS: "+name, "child output:\n%s", text)
	return false
}

// waitForOutage bounds how long a test waits for the breaker to open.
const waitForOutage = 5 * time.Second

// edgeCache is a tiered.Cache with small timeouts, closed by the test's cleanup.
func edgeCache(t *testing.T, s *redistest.Server, mod ...func(*tiered.Options)) *tiered.Cache {
	t.Helper()
	o := tiered.Options{RedisURL: s.URL(), KeyPrefix: "t:", Timeout: 50 * time.Millisecond, BreakerCooldown: 50 * time.Millisecond}
	for _, f := range mod {
		f(&o)
	}
	c, err := tiered.New(context.Background(), o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// A loader that panics gives the caller a *tiered.PanicError; the process survives, and
// the counter can be loaded again.
func TestCounterGetOrLoadPanicIsAnError(t *testing.T) {
	if !edgeInChild(t, "TestCounterGetOrLoadPanicIsAnError") {
		return
	}
	s := redistest.Start(t)
	c := newCounters(t, s, Options{TTL: time.Minute})
	ctx := context.Background()
	_, err := c.GetOrLoad(ctx, likes, func(context.Context) (int64, error) { panic("loader bug") })
	var pe *tiered.PanicError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "loader bug", pe.Value)
	n, err := c.GetOrLoad(ctx, likes, func(context.Context) (int64, error) { return 7, nil })
	require.NoError(t, err)
	require.EqualValues(t, 7, n)
}

// A load whose callers have all given up is cancelled: no loader outlives its callers.
func TestCounterGetOrLoadLoadsEndWithTheirCallers(t *testing.T) {
	s := redistest.Start(t)
	c := newCounters(t, s, Options{TTL: time.Minute})
	const callers = 20
	var started, running atomic.Int64
	release := make(chan struct{}) // lets loaders that ignore their context end with the test
	t.Cleanup(func() { close(release) })
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			key := Key{Target: "article", ID: strconv.Itoa(i), Counter: "likes"}
			_, err := c.GetOrLoad(ctx, key, func(lctx context.Context) (int64, error) {
				started.Add(1)
				running.Add(1)
				defer running.Add(-1)
				select {
				case <-lctx.Done():
					return 0, lctx.Err()
				case <-release:
					return 1, nil
				}
			})
			assert.ErrorIs(t, err, context.DeadlineExceeded)
		}()
	}
	wg.Wait()
	require.EqualValues(t, callers, started.Load(), "every caller's load started before its deadline")
	require.Eventually(t, func() bool { return running.Load() == 0 }, 2*time.Second, time.Millisecond,
		"the callers returned, but loaders are still running (%d of %d)", running.Load(), callers)
}

// The caller's own deadline or cancellation is the caller's error, not a Redis outage, and
// it does not count against the cache's breaker.
func TestCounterCallerDeadlineIsNotAnOutage(t *testing.T) {
	s := redistest.Start(t)
	c := edgeCache(t, s)
	cnt := New(c.Redis(), Options{KeyPrefix: "t:"})
	expired, cancelExpired := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancelExpired()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want error
	}{{"expired", expired, context.DeadlineExceeded}, {"cancelled", cancelled, context.Canceled}} {
		for i := range 20 {
			_, err := cnt.Increment(tc.ctx, likes, 1)
			require.ErrorIs(t, err, tc.want, "%s ctx, call %d", tc.name, i)
			require.NotErrorIs(t, err, ErrUnavailable, "%s ctx", tc.name)
			require.NotErrorIs(t, err, tiered.ErrUnavailable, "%s ctx", tc.name)
		}
	}
	st := c.Stats()
	require.Zero(t, st.BreakerOpens)
	require.Equal(t, "closed", fmt.Sprint(st.Breaker))
	n, err := cnt.Increment(context.Background(), likes, 1)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}

// edgeRequireFailedFast checks that err is an outage that did not come from the network: the
// call was refused by the open breaker instead of dialling the dead server.
func edgeRequireFailedFast(t *testing.T, err error, what string) {
	t.Helper()
	require.ErrorIs(t, err, ErrUnavailable, what)
	require.NotErrorIs(t, err, syscall.ECONNREFUSED, "%s: the call dialled the dead server instead of failing at the open breaker: %v", what, err)
	var op *net.OpError
	require.False(t, errors.As(err, &op), "%s: the call went to the network instead of failing at the open breaker: %v", what, err)
}

// Counters on the cache's client go through the cache's breaker: their failures alone
// open it, and then they fail fast.
func TestCounterFailuresOpenTheCacheBreaker(t *testing.T) {
	s := redistest.Start(t)
	const threshold = 3
	c := edgeCache(t, s, func(o *tiered.Options) {
		o.BreakerThreshold = threshold
		o.BreakerCooldown = time.Minute // stays open for the rest of the test: no probe
	})
	cnt := New(c.Redis(), Options{KeyPrefix: "t:", Timeout: 50 * time.Millisecond})
	ctx := context.Background()
	_, err := cnt.Increment(ctx, likes, 1)
	require.NoError(t, err)

	s.Stop()
	// Consecutive failures over at least 10 ms open the breaker (a burst at one moment is a
	// dropped connection, not an outage).
	require.Eventually(t, func() bool {
		_, err := cnt.Increment(ctx, likes, 1)
		require.ErrorIs(t, err, ErrUnavailable, "Increment with Redis stopped")
		return c.Stats().BreakerOpens >= 1
	}, waitForOutage, time.Millisecond, "counter failures did not open the cache's breaker")
	st := c.Stats()
	require.Equal(t, "open", fmt.Sprint(st.Breaker))
	for i := range 5 {
		_, err := cnt.Increment(ctx, likes, 1)
		edgeRequireFailedFast(t, err, "Increment "+strconv.Itoa(i+1)+" with the breaker open")
	}
}

// Counter errors read once: "counter:" appears once, whatever the error.
func TestCounterErrorsReadOnce(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	cache := newCounters(t, s, Options{TTL: time.Minute})
	persistent := newCounters(t, s, Options{Timeout: 50 * time.Millisecond})
	overflowKey := Key{Target: "article", ID: "1", Counter: "overflow"}
	require.NoError(t, persistent.Set(ctx, overflowKey, math.MaxInt64, 0))
	hashKey := Key{Target: "article", ID: "1", Counter: "hash"}
	s.Do("HSET", rkey(t, persistent, hashKey), "f", "v")

	check := func(what string, err, want error) {
		t.Helper()
		require.ErrorIs(t, err, want, what)
		assert.Len(t, regexp.MustCompile(`(^|: )counter: `).FindAllString(err.Error(), -1), 1, "one package prefix: %s: %q", what, err.Error())
		assert.NotContains(t, err.Error(), "\n", what)
	}
	_, err := cache.Increment(ctx, likes, 1)
	check("Increment of a missing counter in cache mode", err, ErrNotFound)
	_, err = persistent.Increment(ctx, overflowKey, 1)
	check("Increment past MaxInt64", err, ErrOverflow)
	_, err = persistent.Increment(ctx, hashKey, 1)
	check("Increment of a hash", err, ErrNotCounter)
	_, err = persistent.Increment(ctx, Key{Target: "article"}, 1)
	check("Increment of a bad key", err, ErrBadKey)
	s.Stop()
	_, err = persistent.Increment(ctx, likes, 1)
	check("Increment with Redis stopped", err, ErrUnavailable)
}

// Counters on the client of a closed cache say the cache is closed, not that Redis is
// unavailable.
func TestCounterOnClosedCache(t *testing.T) {
	s := redistest.Start(t)
	c := edgeCache(t, s)
	cnt := New(c.Redis(), Options{KeyPrefix: "t:"})
	ctx := context.Background()
	_, err := cnt.Increment(ctx, likes, 1)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	_, err = cnt.Increment(ctx, likes, 1)
	require.ErrorIs(t, err, tiered.ErrClosed)
	require.NotErrorIs(t, err, ErrUnavailable)
	require.NotContains(t, err.Error(), "rueidis client is closing")
}

// Constructor errors are stored and reported by Err.
func TestCountersErr(t *testing.T) {
	require.ErrorIs(t, New(nil, Options{}).Err(), ErrInvalidOptions, "nil client")
	s := redistest.Start(t)
	client := newClient(t, s)
	require.ErrorIs(t, New(client, Options{TTL: -time.Second}).Err(), ErrInvalidOptions, "negative TTL")
	require.NoError(t, New(client, Options{}).Err())
}

// Counters of a closed cache fail with ErrClosed (which matches tiered.ErrClosed), not
// with "redis unavailable".
func TestCounterErrClosed(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	c := edgeCache(t, s)
	onClient := New(c.Redis(), Options{KeyPrefix: "t:"})
	fromCache := FromCache(c, Options{})
	require.NoError(t, fromCache.Err())
	for name, cnt := range map[string]*Counters{"New(c.Redis())": onClient, "FromCache": fromCache} {
		_, err := cnt.Increment(ctx, likes, 1)
		require.NoError(t, err, name)
	}
	require.NoError(t, c.Close())
	for name, cnt := range map[string]*Counters{"New(c.Redis())": onClient, "FromCache": fromCache} {
		_, err := cnt.Increment(ctx, likes, 1)
		require.ErrorIs(t, err, ErrClosed, name)
		require.ErrorIs(t, err, tiered.ErrClosed, name)
		require.NotErrorIs(t, err, ErrUnavailable, name)
		require.NotContains(t, err.Error(), "rueidis client is closing", name)
	}
}

// FromCache uses the cache's KeyPrefix and the cache's breaker.
func TestCounterFromCache(t *testing.T) {
	s := redistest.Start(t)
	const threshold = 3
	c := edgeCache(t, s, func(o *tiered.Options) {
		o.KeyPrefix = "fc:"
		o.BreakerThreshold = threshold
		o.BreakerCooldown = time.Minute // stays open for the rest of the test
	})
	cnt := FromCache(c, Options{})
	require.NoError(t, cnt.Err())
	rk := rkey(t, cnt, likes)
	require.True(t, strings.HasPrefix(rk, "fc:"), "RedisKey %q does not start with the cache's KeyPrefix", rk)
	ctx := context.Background()
	n, err := cnt.Increment(ctx, likes, 1)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	raw, err := s.Do("GET", rk).ToString()
	require.NoError(t, err)
	require.Equal(t, "1", raw)

	s.Stop()
	require.Eventually(t, func() bool {
		_, err := cnt.Increment(ctx, likes, 1)
		require.ErrorIs(t, err, ErrUnavailable, "Increment with Redis stopped")
		return c.Stats().BreakerOpens >= 1
	}, waitForOutage, time.Millisecond)
	st := c.Stats()
	require.GreaterOrEqual(t, st.BreakerOpens, uint64(1), "counter failures opened the cache's breaker")
	require.Equal(t, "open", fmt.Sprint(st.Breaker))
	for i := range 5 {
		_, err := cnt.Increment(ctx, likes, 1)
		edgeRequireFailedFast(t, err, "Increment "+strconv.Itoa(i+1)+" with the breaker open")
	}
}

// With counters on the cache's breaker, the caller's own deadline still is not an outage
// and does not open the breaker.
func TestCounterFromCacheCallerDeadline(t *testing.T) {
	s := redistest.Start(t)
	c := edgeCache(t, s)
	cnt := FromCache(c, Options{})
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	for i := range 20 {
		_, err := cnt.Increment(expired, likes, 1)
		require.ErrorIs(t, err, context.DeadlineExceeded, "call %d", i)
		require.NotErrorIs(t, err, ErrUnavailable)
	}
	st := c.Stats()
	require.Zero(t, st.BreakerOpens)
	require.Equal(t, "closed", fmt.Sprint(st.Breaker))
	_, err := cnt.Increment(context.Background(), likes, 1)
	require.NoError(t, err)
}

// A load that the cache's Close cancelled is reported as the cache closing.
func TestCounterLoadCancelledByCloseIsErrClosed(t *testing.T) {
	s := redistest.Start(t)
	c, err := tiered.New(context.Background(), tiered.Options{RedisURL: s.URL(), KeyPrefix: "t:"})
	require.NoError(t, err)
	cnt := FromCache(c, Options{})
	loading := make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := cnt.GetOrLoad(context.Background(), likes, func(lctx context.Context) (int64, error) {
			close(loading)
			<-lctx.Done()
			return 0, lctx.Err()
		})
		done <- err
	}()
	<-loading
	require.NoError(t, c.Close())
	err = <-done
	require.ErrorIs(t, err, ErrClosed)
	require.NotErrorIs(t, err, context.Canceled)
	_, err = cnt.GetOrLoad(context.Background(), likes, nil)
	require.ErrorIs(t, err, ErrInvalidOptions, "a nil loader")
}
