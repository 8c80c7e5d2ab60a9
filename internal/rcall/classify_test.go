package rcall_test

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/lifetime"
	"github.com/synspirit/tiercache/internal/rcall"
	"github.com/synspirit/tiercache/internal/redistest"
)

// A server that cannot serve anything now (LOADING, BUSY, MASTERDOWN, CLUSTERDOWN): every
// call is unavailable and a failure for the breaker, which opens at its threshold and then
// refuses calls without sending them.
func requireDown(t *testing.T, client rueidis.Client, code string) {
	t.Helper()
	b := stayOpen()
	cnt := &counting{Client: client}
	caller := rcall.New(cnt, options(b))

	err := get(caller, "k:1")
	requireUnavailable(t, err)
	requireReply(t, err, code)
	assert.Equal(t, rcall.Closed, b.State(), "one failure of two")

	err = get(caller, "k:2")
	requireUnavailable(t, err)
	requireReply(t, err, code)
	assert.Equal(t, rcall.Open, b.State())
	assert.Equal(t, uint64(1), b.Opens())

	sent := cnt.calls()
	err = get(caller, "k:1")
	requireUnavailable(t, err)
	require.ErrorContains(t, err, "circuit breaker open")
	assert.Equal(t, sent, cnt.calls(), "an open breaker sends nothing")
}

func TestLoadingIsAnOutage(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.WithArgs("--enable-debug-command", "yes"))
	s.Do("DEBUG", "POPULATE", "8000", "k", "100")
	// key-load-delay slows the load down (µs per key). Without the small
	// loading-process-events-interval-bytes, 7.0 serves other clients only every 2 MB of
	// RDB during DEBUG RELOAD: they would wait out the load instead of getting LOADING.
	s.Do("CONFIG", "SET", "key-load-delay", "50")
	s.Do("CONFIG", "SET", "loading-process-events-interval-bytes", "1024")
	client := newClient(t, s)

	dialRaw(t, s).send("DEBUG", "RELOAD") // blocks its connection until the load is over
	probe := dialRaw(t, s)
	require.Eventually(t, func() bool { return probe.infoField("persistence", "loading") == "1" },
		5*time.Second, time.Millisecond)

	requireDown(t, client, "LOADING")
}

func TestBusyIsAnOutage(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	s.Do("CONFIG", "SET", "busy-reply-threshold", "50") // lua-time-limit, in ms
	client := newClient(t, s)

	script := dialRaw(t, s)
	script.send("EVAL", "while true do end", "0")
	probe := dialRaw(t, s)
	require.Eventually(t, func() bool {
		_, err := probe.do("PING")
		return err != nil && strings.HasPrefix(err.Error(), "BUSY ")
	}, 5*time.Second, 5*time.Millisecond)

	requireDown(t, client, "BUSY")

	_, err := probe.do("SCRIPT", "KILL")
	require.NoError(t, err)
	_, err = script.read()
	require.ErrorContains(t, err, "Script killed")
	require.Equal(t, "PONG", mustString(t, s.Do("PING")))
}

func TestMasterDownIsAnOutage(t *testing.T) {
	t.Parallel()
	m := redistest.Start(t, redistest.WithArgs("--repl-diskless-sync-delay", "0"))
	// Start returns once the replica answers PING, which it does not (MASTERDOWN) before
	// its first sync: the link is up.
	r := redistest.Start(t, redistest.WithArgs("--replicaof", "127.0.0.1", strconv.Itoa(m.Port()), "--replica-serve-stale-data", "no"))
	client := newClient(t, r)
	require.True(t, rueidis.IsRedisNil(client.Do(context.Background(), client.B().Get().Key("k:1").Build()).Error()))

	m.Stop()
	probe := dialRaw(t, r)
	require.Eventually(t, func() bool { return probe.infoField("replication", "master_link_status") == "down" },
		5*time.Second, 5*time.Millisecond)

	requireDown(t, client, "MASTERDOWN")
}

func TestClusterDownIsAnOutage(t *testing.T) {
	t.Parallel()
	// A cluster node that serves no slot: every keyed command is CLUSTERDOWN.
	s := redistest.Start(t, redistest.WithArgs("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"))
	requireDown(t, newClient(t, s), "CLUSTERDOWN")
}

// A server that refuses one kind of command (OOM, READONLY, NOREPLICAS) while it serves
// others: the refused call is unavailable but not a failure for the breaker.
func TestRefusedCommandsAreNotFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code  string
		start func(t *testing.T) *redistest.Server
	}{
		{"OOM", func(t *testing.T) *redistest.Server {
			s := redistest.Start(t, redistest.WithArgs("--maxmemory-policy", "noeviction"))
			s.Do("CONFIG", "SET", "maxmemory", "1")
			return s
		}},
		{"READONLY", func(t *testing.T) *redistest.Server {
			m := redistest.Start(t, redistest.WithArgs("--repl-diskless-sync-delay", "0"))
			return redistest.Start(t, redistest.WithArgs("--replicaof", "127.0.0.1", strconv.Itoa(m.Port())))
		}},
		{"NOREPLICAS", func(t *testing.T) *redistest.Server {
			return redistest.Start(t, redistest.WithArgs("--min-replicas-to-write", "1"))
		}},
	} {
		t.Run(tc.code, func(t *testing.T) {
			b := stayOpen()
			caller := rcall.New(newClient(t, tc.start(t)), options(b))
			for range 4 {
				err := caller.Do(context.Background(), caller.B().Set().Key("k").Value("v").Build()).Error()
				requireUnavailable(t, err)
				requireReply(t, err, tc.code)
			}
			assert.Equal(t, rcall.Closed, b.State())
			assert.Zero(t, b.Opens())
			require.True(t, rueidis.IsRedisNil(get(caller, "k")), "reads still work")
		})
	}
}

// A plain error reply and a nil reply are answers: returned as they are, and successes that
// end a run of failures.
func TestAnswersAreReturnedAsTheyAre(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	s.Do("RPUSH", "list", "a")
	b := stayOpen()
	live := rcall.New(newClient(t, s), options(b))
	dead := rcall.New(deadClient(t), options(b)) // the same breaker

	requireUnavailable(t, get(dead, "k"))

	res := live.Do(context.Background(), live.B().Incr().Key("list").Build())
	err := res.Error()
	requireReply(t, err, "WRONGTYPE")
	assert.NoError(t, res.NonRedisError(), "the reply itself, not an error made of it")
	assert.False(t, rcall.IsUnavailable(err))
	assert.NotErrorIs(t, err, errTestUnavailable)

	requireUnavailable(t, get(dead, "k"))
	assert.Equal(t, rcall.Closed, b.State(), "WRONGTYPE reset the run of failures")

	err = get(live, "missing")
	assert.True(t, rueidis.IsRedisNil(err), "%v", err)
	assert.False(t, rcall.IsUnavailable(err))
	requireUnavailable(t, get(dead, "k"))
	assert.Equal(t, rcall.Closed, b.State(), "a nil reply reset the run of failures")

	requireUnavailable(t, get(dead, "k"))
	assert.Equal(t, rcall.Open, b.State())

	v, err := live.Do(context.Background(), live.B().Lindex().Key("list").Index(0).Build()).ToString()
	require.Error(t, err, "the open breaker refuses the live server's calls too")
	requireUnavailable(t, err)
	assert.Empty(t, v)
}

// Refused connections open the breaker; an open breaker sends nothing; after the cooldown
// one probe goes through: failing, it re-opens the breaker; succeeding once Redis is back,
// it closes it.
func TestRefusedConnectionOpensTheBreakerAndAProbeClosesIt(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	var opened, closed int
	b := rcall.NewBreaker(rcall.BreakerOptions{Threshold: 2, Cooldown: 300 * time.Millisecond, OnOpen: func() { opened++ }, OnClose: func() { closed++ }})
	cnt := &counting{Client: newClient(t, s)}
	caller := rcall.New(cnt, options(b))
	require.True(t, rueidis.IsRedisNil(get(caller, "k")))

	s.Stop()
	requireUnavailable(t, get(caller, "k"))
	assert.Equal(t, rcall.Closed, b.State())
	requireUnavailable(t, get(caller, "k"))
	assert.Equal(t, rcall.Open, b.State())
	assert.Equal(t, uint64(1), b.Opens())
	assert.Equal(t, 1, opened)

	sent := cnt.calls()
	err := get(caller, "k")
	requireUnavailable(t, err)
	require.ErrorContains(t, err, "circuit breaker open")
	assert.Equal(t, sent, cnt.calls(), "nothing is sent while the breaker is open")

	// After the cooldown, one probe reaches the client; Redis is still down: open again,
	// for another cooldown, and no new opening is counted.
	require.Eventually(t, func() bool {
		before := cnt.calls()
		requireUnavailable(t, get(caller, "k"))
		return cnt.calls() == before+1
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, rcall.Open, b.State())
	sent = cnt.calls()
	require.ErrorContains(t, get(caller, "k"), "circuit breaker open", "a failed probe starts a new cooldown")
	assert.Equal(t, sent, cnt.calls())
	assert.Equal(t, uint64(1), b.Opens())
	assert.Equal(t, 1, opened)
	assert.Zero(t, closed)

	s.Restart()
	require.Eventually(t, func() bool { return rueidis.IsRedisNil(get(caller, "k")) }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, rcall.Closed, b.State())
	assert.Equal(t, 1, closed)
	assert.Equal(t, uint64(1), b.Opens())
	require.True(t, rueidis.IsRedisNil(get(caller, "k")))
}

// The call's own deadline is an outage: a timeout error, never the caller's
// context.DeadlineExceeded, and a failure for the breaker.
func TestCallTimeoutIsAnOutage(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	b := stayOpen()
	o := options(b)
	o.Timeout = 50 * time.Millisecond
	caller := rcall.New(newClient(t, s), o)
	require.True(t, rueidis.IsRedisNil(get(caller, "k")))

	waitOver := pause(t, s, 1000)
	for i := range 2 {
		assert.Equal(t, rcall.Closed, b.State(), "call %d", i)
		err := get(caller, "k")
		requireUnavailable(t, err)
		assert.True(t, timeoutErr(err), "%v", err)
		assert.NotErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorContains(t, err, "no answer within 50ms")
	}
	assert.Equal(t, rcall.Open, b.State())
	waitOver()
}

// A call bounded by a socket deadline can come back before its context's timer has fired.
// That must not make the call's own timeout look like the caller's deadline, nor the
// caller's deadline look like an outage. (Before the fix, about one call in six was
// misclassified either way.)
func TestCallTimeoutAndCallerDeadlineAreNeverConfused(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	client := newClient(t, s)
	own := rcall.New(client, rcall.Options{Timeout: 10 * time.Millisecond, Unavailable: errTestUnavailable})
	b := rcall.NewBreaker(rcall.BreakerOptions{Threshold: 1, Cooldown: time.Hour})
	long := rcall.New(client, rcall.Options{Timeout: time.Minute, Breaker: b, Unavailable: errTestUnavailable})

	calls := 0
	for range 3 {
		waitOver := pause(t, s, 1000)
		// 12 calls of each kind, fewer if the machine is so slow that the pause might end.
		for i, start := 0, time.Now(); i < 12 && time.Since(start) < 600*time.Millisecond; i++ {
			err := get(own, "k")
			if rueidis.IsRedisNil(err) {
				break // answered: the pause is over (a machine so loaded that the loop outlived it)
			}
			calls++
			requireUnavailable(t, err)
			require.True(t, timeoutErr(err), "%v", err)
			require.NotErrorIs(t, err, context.DeadlineExceeded)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			err = long.Do(ctx, long.B().Get().Key("k").Build()).Error()
			cancel()
			if rueidis.IsRedisNil(err) {
				break
			}
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.False(t, rcall.IsUnavailable(err), "%v", err)
		}
		waitOver()
	}
	t.Logf("%d calls of each kind", calls)
	require.Positive(t, calls, "no call was made while Redis was paused")
	assert.Equal(t, rcall.Closed, b.State(), "the caller's deadline never told the breaker")
}

func TestCallerContextIsNeverAnOutage(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	b := stayOpen()
	cnt := &counting{Client: newClient(t, s)}
	live := rcall.New(cnt, options(b))
	dead := rcall.New(deadClient(t), options(b))
	require.True(t, rueidis.IsRedisNil(get(live, "k")))

	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		sent := cnt.calls()
		err := live.Do(ctx, live.B().Get().Key("k").Build()).Error()
		require.ErrorIs(t, err, context.Canceled)
		assert.False(t, rcall.IsUnavailable(err))
		assert.Equal(t, sent, cnt.calls(), "nothing is sent")
	})
	t.Run("expired", func(t *testing.T) {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		sent := cnt.calls()
		err := live.Do(ctx, live.B().Get().Key("k").Build()).Error()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.False(t, rcall.IsUnavailable(err))
		assert.Equal(t, sent, cnt.calls())
	})
	t.Run("passes during the call", func(t *testing.T) {
		requireUnavailable(t, get(dead, "k")) // one failure of two
		waitOver := pause(t, s, 1000)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond) // < Timeout
		err := live.Do(ctx, live.B().Get().Key("k").Build()).Error()
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.False(t, rcall.IsUnavailable(err), "%v", err)
		assert.Equal(t, rcall.Closed, b.State(), "not a failure")
		requireUnavailable(t, get(dead, "k"))
		assert.Equal(t, rcall.Open, b.State(), "nor a success: the run of failures went on")
		waitOver()
	})
	t.Run("refused before the breaker", func(t *testing.T) {
		require.Equal(t, rcall.Open, b.State())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.ErrorIs(t, live.Do(ctx, live.B().Get().Key("k").Build()).Error(), context.Canceled)
	})
}

// A probe that its caller abandons (the caller's deadline passes) says nothing about Redis:
// the breaker goes back to open without a new cooldown, and the next call is a probe.
func TestAbandonedProbeIsGivenBack(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	var closed int
	b := rcall.NewBreaker(rcall.BreakerOptions{Threshold: 2, Cooldown: 200 * time.Millisecond, OnClose: func() { closed++ }})
	cnt := &counting{Client: newClient(t, s)}
	live := rcall.New(cnt, rcall.Options{Timeout: 5 * time.Second, Breaker: b, Unavailable: errTestUnavailable})
	dead := rcall.New(deadClient(t), options(b))
	require.True(t, rueidis.IsRedisNil(get(live, "k")))
	requireUnavailable(t, get(dead, "k"))
	requireUnavailable(t, get(dead, "k"))
	require.Equal(t, rcall.Open, b.State())

	waitOver := pause(t, s, 1000)
	shortGet := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		return live.Do(ctx, live.B().Get().Key("k").Build()).Error()
	}
	// Until the cooldown is over the breaker refuses; then a probe goes to the paused
	// server and its caller gives up.
	require.Eventually(t, func() bool {
		err := shortGet()
		if errors.Is(err, context.DeadlineExceeded) {
			return true
		}
		require.ErrorContains(t, err, "circuit breaker open")
		return false
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, rcall.Open, b.State(), "the probe was given back")
	assert.Equal(t, uint64(1), b.Opens())

	sent := cnt.calls()
	err := shortGet()
	require.ErrorIs(t, err, context.DeadlineExceeded, "the next call is a probe at once")
	assert.False(t, rcall.IsUnavailable(err))
	assert.Equal(t, sent+1, cnt.calls())
	assert.Equal(t, rcall.Open, b.State())

	waitOver()
	require.True(t, rueidis.IsRedisNil(get(live, "k")))
	assert.Equal(t, rcall.Closed, b.State())
	assert.Equal(t, 1, closed)
}

func TestClosedLifetimeRefusesEverything(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	life := lifetime.New()
	o := options(stayOpen())
	o.Life = life
	cnt := &counting{Client: newClient(t, s)}
	caller := rcall.New(cnt, o)
	require.True(t, rueidis.IsRedisNil(get(caller, "k")))
	require.False(t, caller.Closed())
	require.Same(t, life, caller.Life())

	life.Close()
	require.True(t, caller.Closed())
	sent := cnt.calls()
	ctx := context.Background()
	requireClosed := func(err error) {
		t.Helper()
		require.ErrorIs(t, err, rcall.ErrClosed)
		require.ErrorIs(t, err, errTestClosed)
		require.False(t, rcall.IsUnavailable(err))
		require.NotErrorIs(t, err, errTestUnavailable)
		require.EqualError(t, err, "closed")
	}
	requireClosed(get(caller, "k"))
	for _, r := range caller.DoMulti(ctx, caller.B().Get().Key("a").Build(), caller.B().Get().Key("b").Build()) {
		requireClosed(r.Error())
	}
	requireClosed(caller.Exec(ctx, rcall.NewScript("return 1"), nil, nil).Error())
	_, err := caller.MGet(ctx, []string{"a", "b"})
	requireClosed(err)
	requireClosed(caller.Del(ctx, []string{"a"}))
	requireClosed(caller.DoOn(ctx, cnt, caller.B().Ping().Build(), 0).Error())
	requireClosed(caller.Classify(ctx, io.EOF))
	assert.Equal(t, sent, cnt.calls(), "nothing is sent")

	// Closed comes before the caller's context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	requireClosed(caller.Do(cctx, caller.B().Get().Key("k").Build()).Error())
}

// A call in flight when the owner closes fails with Closed, and does not tell the breaker.
func TestCallInFlightWhenClosing(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	life := lifetime.New()
	b := rcall.NewBreaker(rcall.BreakerOptions{Threshold: 1, Cooldown: time.Hour})
	o := options(b)
	o.Life, o.Timeout = life, 200*time.Millisecond
	cnt := &counting{Client: newClient(t, s)}
	caller := rcall.New(cnt, o)
	require.True(t, rueidis.IsRedisNil(get(caller, "k")))

	waitOver := pause(t, s, 1000)
	done := make(chan error, 1)
	go func() { done <- get(caller, "k") }()
	require.Eventually(t, func() bool { return cnt.do.Load() == 2 }, 5*time.Second, time.Millisecond)
	life.Close()
	err := <-done
	require.ErrorIs(t, err, rcall.ErrClosed)
	require.ErrorIs(t, err, errTestClosed)
	require.False(t, rcall.IsUnavailable(err))
	assert.Equal(t, rcall.Closed, b.State(), "the breaker was not told")
	waitOver()
}

func TestWithSharesTheBreakerAndAddsSentinels(t *testing.T) {
	t.Parallel()
	errChildUnavailable := errors.New("child: unavailable")
	errChildClosed := errors.New("child: closed")
	life := lifetime.New()
	b := stayOpen()
	o := options(b)
	o.Life = life
	o.Timeout = 300 * time.Millisecond
	client := deadClient(t)
	parent := rcall.New(client, o)
	child := parent.With(rcall.Options{Unavailable: errChildUnavailable, Closed: errChildClosed})

	assert.Same(t, b, child.Breaker())
	assert.Same(t, life, child.Life())
	assert.Equal(t, client, child.Client())
	assert.Equal(t, 300*time.Millisecond, child.Timeout(), "0 keeps the parent's")
	assert.Equal(t, time.Second, parent.With(rcall.Options{Timeout: time.Second}).Timeout())
	assert.Equal(t, 300*time.Millisecond, parent.Timeout())

	err := get(child, "k")
	requireUnavailable(t, err, errChildUnavailable)
	assert.Equal(t, rcall.Closed, b.State())
	err = get(parent, "k")
	requireUnavailable(t, err)
	assert.NotErrorIs(t, err, errChildUnavailable, "the parent's errors do not match the child's sentinel")
	assert.Equal(t, rcall.Open, b.State(), "one failure through each opens the shared breaker")
	err = get(child, "k")
	requireUnavailable(t, err, errChildUnavailable)
	require.ErrorContains(t, err, "circuit breaker open")

	grandchild := child.With(rcall.Options{Unavailable: errors.New("grandchild")})
	requireUnavailable(t, get(grandchild, "k"), errChildUnavailable)

	life.Close()
	err = get(child, "k")
	require.ErrorIs(t, err, rcall.ErrClosed)
	require.ErrorIs(t, err, errTestClosed)
	require.ErrorIs(t, err, errChildClosed)
	err = get(parent, "k")
	require.ErrorIs(t, err, errTestClosed)
	require.NotErrorIs(t, err, errChildClosed)
}

// A negative Timeout in With means no deadline: a call waits out a pause and gets its
// answer, where the parent's times out.
func TestWithNegativeTimeoutMeansNone(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	o := options(nil)
	o.Timeout = 50 * time.Millisecond
	parent := rcall.New(newClient(t, s), o)
	none := parent.With(rcall.Options{Timeout: -1})
	assert.Negative(t, none.Timeout())
	require.True(t, rueidis.IsRedisNil(get(parent, "k")))

	waitOver := pause(t, s, 300)
	err := get(parent, "k")
	requireUnavailable(t, err)
	assert.True(t, timeoutErr(err))
	assert.True(t, rueidis.IsRedisNil(get(none, "k")), "no deadline: the answer after the pause")
	waitOver()
}

func TestTimerDeadline(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	client := newClient(t, s)

	t.Run("times out as unavailable", func(t *testing.T) {
		b := stayOpen()
		o := options(b)
		o.Timeout, o.TimerDeadline = 50*time.Millisecond, true
		caller := rcall.New(client, o)
		require.True(t, rueidis.IsRedisNil(get(caller, "k")))
		waitOver := pause(t, s, 500)
		for range 2 {
			err := get(caller, "k")
			requireUnavailable(t, err)
			assert.True(t, timeoutErr(err), "%v", err)
			assert.ErrorContains(t, err, "no answer within 50ms")
			assert.NotErrorIs(t, err, context.DeadlineExceeded)
			assert.NotErrorIs(t, err, context.Canceled)
		}
		assert.Equal(t, rcall.Open, b.State(), "two timeouts are two failures")
		waitOver()
	})

	t.Run("cancelled caller returns at once", func(t *testing.T) {
		b := stayOpen()
		o := options(b)
		o.Timeout = time.Minute
		caller := rcall.New(client, o).With(rcall.Options{TimerDeadline: true}) // With turns it on
		require.True(t, rueidis.IsRedisNil(get(caller, "k")))
		waitOver := pause(t, s, 1000)
		witness := dialRaw(t, s)
		witness.send("PING") // answered when the pause is over

		ctx, cancel := context.WithCancel(context.Background())
		timer := time.AfterFunc(50*time.Millisecond, cancel)
		defer timer.Stop()
		err := caller.Do(ctx, caller.B().Get().Key("k").Build()).Error()
		require.ErrorIs(t, err, context.Canceled)
		assert.False(t, rcall.IsUnavailable(err))

		// Redis has not answered anything yet: the call came back on cancellation.
		_ = witness.conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, rerr := readReply(witness.r)
		require.True(t, timeoutErr(rerr), "the pause is over already: %v", rerr)
		assert.Equal(t, rcall.Closed, b.State())

		waitOver()
		pong, err := witness.read()
		require.NoError(t, err)
		assert.Equal(t, "PONG", pong)
	})
}

// DoOn sends on another client, classified, within its own timeout, outside the breaker.
func TestDoOn(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	b := stayOpen()
	o := options(b)
	o.Timeout = 50 * time.Millisecond
	caller := rcall.New(deadClient(t), o)
	other := &counting{Client: newClient(t, s)}
	ctx := context.Background()

	requireUnavailable(t, get(caller, "k"))
	requireUnavailable(t, get(caller, "k"))
	require.Equal(t, rcall.Open, b.State())

	res := caller.DoOn(ctx, other, other.B().Ping().Build(), 0)
	require.NoError(t, res.Error(), "an open breaker does not stop DoOn")
	assert.Equal(t, "PONG", mustString(t, res))

	requireUnavailable(t, caller.DoOn(ctx, deadClient(t), other.B().Ping().Build(), 0).Error())

	waitOver := pause(t, s, 500)
	err := caller.DoOn(ctx, other, other.B().Ping().Build(), 0).Error()
	requireUnavailable(t, err)
	assert.True(t, timeoutErr(err), "%v", err)
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "no answer within 50ms", "the Caller's timeout")
	// A timeout of DoOn's own is the one its error names (the tracking keeper's PINGs said
	// "within 0s", their Caller having none).
	err = caller.DoOn(ctx, other, other.B().Ping().Build(), 80*time.Millisecond).Error()
	requireUnavailable(t, err)
	assert.ErrorContains(t, err, "no answer within 80ms")

	cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	err = caller.DoOn(cctx, other, other.B().Ping().Build(), time.Minute).Error()
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.False(t, rcall.IsUnavailable(err))
	waitOver()

	cctx, cancel = context.WithCancel(ctx)
	cancel()
	sent := other.calls()
	require.ErrorIs(t, caller.DoOn(cctx, other, other.B().Ping().Build(), 0).Error(), context.Canceled)
	assert.Equal(t, sent, other.calls())
}

func TestClassify(t *testing.T) {
	t.Parallel()
	caller := rcall.New(nil, options(nil))
	ctx := context.Background()

	require.NoError(t, caller.Classify(ctx, nil))
	require.True(t, rueidis.IsRedisNil(caller.Classify(ctx, rueidis.Nil)))

	err := caller.Classify(ctx, io.EOF)
	requireUnavailable(t, err)
	assert.ErrorIs(t, err, io.EOF, "the cause is kept")
	assert.EqualError(t, err, "redis unavailable: EOF")
	assert.Same(t, err, caller.Classify(ctx, err), "classified once, not wrapped again")

	wrapped := caller.Unavailable(errors.New("not subscribed"))
	requireUnavailable(t, wrapped)
	assert.EqualError(t, wrapped, "redis unavailable: not subscribed")

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	assert.Equal(t, context.Canceled, caller.Classify(cctx, io.EOF))
	dctx, dcancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer dcancel()
	assert.Equal(t, context.DeadlineExceeded, caller.Classify(dctx, context.DeadlineExceeded))

	// Without Options sentinels, the package's own still match.
	plain := rcall.New(nil, rcall.Options{})
	err = plain.Classify(ctx, io.EOF)
	assert.ErrorIs(t, err, rcall.ErrUnavailable)
	assert.NotErrorIs(t, err, errTestUnavailable)
	assert.False(t, plain.Closed(), "no Life: never closed")
}

func TestNilBreakerLetsEverythingThrough(t *testing.T) {
	t.Parallel()
	var b *rcall.Breaker
	assert.Equal(t, rcall.Closed, b.State())
	assert.Zero(t, b.Opens())
	caller := rcall.New(deadClient(t), options(nil))
	assert.Nil(t, caller.Breaker())
	for range 5 {
		err := get(caller, "k")
		requireUnavailable(t, err)
		assert.NotContains(t, err.Error(), "circuit breaker open")
	}
}

func mustString(t *testing.T, r rueidis.RedisResult) string {
	t.Helper()
	v, err := r.ToString()
	require.NoError(t, err)
	return v
}
