package rcall

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/deadline"
)

// requireDeadlineIn checks that ctx has a deadline within [lo, hi].
func requireDeadlineIn(t *testing.T, ctx context.Context, lo, hi time.Time) {
	t.Helper()
	d, ok := ctx.Deadline()
	require.True(t, ok, "no deadline")
	require.False(t, d.Before(lo), "deadline %v is %v before %v", d, lo.Sub(d), lo)
	require.False(t, d.After(hi), "deadline %v is %v after %v", d, d.Sub(hi), hi)
}

func TestDeadlineWithinTheAllowanceIsTimeout(t *testing.T) {
	const timeout = time.Second
	window := max(timeout/16, deadline.MinWindow) // how late a shared window may end
	c := New(nil, Options{Timeout: timeout})
	for _, n := range []int64{0, 1, 1 << 20, TransferAllowance} {
		for _, parent := range []context.Context{
			context.Background(), // a shared window
			context.WithValue(context.Background(), ctxKey{}, "value"), // a shared window too
		} {
			before := time.Now()
			cctx, cancel, timedOut := split(c.deadline(parent, n))
			after := time.Now()
			requireDeadlineIn(t, cctx, before.Add(timeout), after.Add(timeout+window))
			assert.False(t, timedOut())
			assert.Equal(t, parent.Value(ctxKey{}), cctx.Value(ctxKey{}), "the caller's values are kept")
			cancel()
		}
		// A cancellable parent gets a deadline of its own: Timeout exactly.
		parent, cancelParent := context.WithCancel(context.Background())
		before := time.Now()
		cctx, cancel, timedOut := split(c.deadline(parent, n))
		after := time.Now()
		requireDeadlineIn(t, cctx, before.Add(timeout), after.Add(timeout))
		assert.False(t, timedOut())
		cancelParent()
		assert.False(t, timedOut(), "the caller's cancellation is not the call's timeout")
		cancel()
	}
}

func TestDeadlineBeyondTheAllowanceAddsTransferTime(t *testing.T) {
	const timeout = 500 * time.Millisecond
	c := New(nil, Options{Timeout: timeout})
	for _, tc := range []struct {
		n     int64
		extra time.Duration
	}{
		{TransferAllowance + TransferRate, time.Second},
		{TransferAllowance + TransferRate/2, 500 * time.Millisecond},
		{TransferAllowance + 10*TransferRate, 10 * time.Second},
		{TransferAllowance + TransferRate/1024, time.Second / 1024},
	} {
		before := time.Now()
		cctx, cancel, timedOut := split(c.deadline(context.Background(), tc.n))
		after := time.Now()
		requireDeadlineIn(t, cctx, before.Add(timeout+tc.extra), after.Add(timeout+tc.extra))
		assert.False(t, timedOut())
		cancel()
	}
}

func TestDeadlineKeepsAnEarlierCallerDeadline(t *testing.T) {
	parent, cancelParent := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelParent()
	want, _ := parent.Deadline()
	for _, o := range []Options{
		{Timeout: time.Second},
		{Timeout: time.Second, TimerDeadline: true},
	} {
		c := New(nil, o)
		for _, n := range []int64{0, TransferAllowance + 100*TransferRate} {
			cctx, cancel, _ := split(c.deadline(parent, n))
			got, ok := cctx.Deadline()
			require.True(t, ok)
			assert.Equal(t, want, got, "n=%d timer=%v", n, o.TimerDeadline)
			cancel()
		}
	}
}

func TestNoTimeoutMeansNoDeadline(t *testing.T) {
	for _, timeout := range []time.Duration{0, -time.Second} {
		for _, timer := range []bool{false, true} {
			c := New(nil, Options{Timeout: timeout, TimerDeadline: timer})
			parent := context.Background()
			cctx, cancel, timedOut := split(c.deadline(parent, TransferAllowance*4))
			assert.Equal(t, parent, cctx)
			_, ok := cctx.Deadline()
			assert.False(t, ok)
			assert.False(t, timedOut())
			cancel()
		}
	}
}

func TestTimerDeadlineCancelsInsteadOfADeadline(t *testing.T) {
	c := New(nil, Options{Timeout: 10 * time.Millisecond, TimerDeadline: true})
	cctx, cancel, timedOut := split(c.deadline(context.Background(), 0))
	defer cancel()
	_, ok := cctx.Deadline()
	assert.False(t, ok, "no context deadline: rueidis must not read synchronously until one")
	require.NotNil(t, cctx.Done())
	<-cctx.Done()
	assert.True(t, timedOut())
	assert.Equal(t, errCallTimeout, context.Cause(cctx))

	// The caller's cancellation is not the call's timeout.
	c = New(nil, Options{Timeout: time.Hour, TimerDeadline: true})
	parent, cancelParent := context.WithCancel(context.Background())
	cctx, cancel2, timedOut := split(c.deadline(parent, 0))
	defer cancel2()
	cancelParent()
	<-cctx.Done()
	assert.False(t, timedOut())

	// Nor is ending the call.
	cctx, cancel3, timedOut := split(c.deadline(context.Background(), 0))
	cancel3()
	<-cctx.Done()
	assert.False(t, timedOut())
}

// lateCtx is a context whose deadline has passed while its timer has not fired yet: Err is
// still nil. A call on an idle connection, bounded by a socket deadline, can come back in
// that instant.
type lateCtx struct {
	context.Context
	deadline time.Time
}

func (c lateCtx) Deadline() (time.Time, bool) { return c.deadline, true }
func (c lateCtx) Done() <-chan struct{}       { return make(chan struct{}) }
func (c lateCtx) Err() error                  { return nil }

type ctxKey struct{}

func TestExpired(t *testing.T) {
	assert.False(t, expired(context.Background()))
	future, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	assert.False(t, expired(future))
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	assert.True(t, expired(cancelled))
	assert.Equal(t, context.Canceled, ctxErr(cancelled))
	late := lateCtx{Context: context.Background(), deadline: time.Now().Add(-time.Millisecond)}
	assert.True(t, expired(late))
	assert.Equal(t, context.DeadlineExceeded, ctxErr(late))
}

// The caller's deadline, passed while its timer has not fired yet, is still the caller's:
// not an outage, and not a failure for the breaker.
func TestCallerDeadlinePassedBeforeItsTimerFired(t *testing.T) {
	b := NewBreaker(BreakerOptions{Threshold: 1, Cooldown: time.Hour})
	c := New(nil, Options{Timeout: time.Second, Breaker: b})
	late := lateCtx{Context: context.Background(), deadline: time.Now().Add(-time.Millisecond)}
	bd := c.deadline(late, 0)
	defer bd.cancel()
	oc, err := c.classify(late, context.DeadlineExceeded, &bd)
	c.account(oc, false)
	assert.Equal(t, abandon, oc)
	assert.Equal(t, context.DeadlineExceeded, err)
	assert.False(t, IsUnavailable(err))
	assert.Equal(t, Closed, b.State())
}

func TestReplyClass(t *testing.T) {
	for msg, want := range map[string]replyKind{
		"LOADING Redis is loading the dataset in memory":                        replyDown,
		"BUSY Redis is busy running a script.":                                  replyDown,
		"MASTERDOWN Link with MASTER is down":                                   replyDown,
		"CLUSTERDOWN The cluster is down":                                       replyDown,
		"CLUSTERDOWN Hash slot not served":                                      replyDown,
		"OOM command not allowed when used memory > 'maxmemory'.":               replyRefused,
		"READONLY You can't write against a read only replica.":                 replyRefused,
		"NOREPLICAS Not enough good replicas to write.":                         replyRefused,
		"TRYAGAIN Multiple keys request during rehashing of slot":               replyRefused,
		"WRONGTYPE Operation against a key holding the wrong kind of value":     replyAnswer,
		"BUSYGROUP Consumer Group name already exists":                          replyAnswer,
		"BUSYKEY Target key name already exists.":                               replyAnswer,
		"NOSCRIPT No matching script. Please use EVAL.":                         replyAnswer,
		"NOPERM this user has no permissions to run the 'get' command":          replyAnswer,
		"user_script:1: Script attempted to access nonexistent global variable": replyAnswer,
		"unknown command 'FOO'":                                                 replyAnswer,
		"LOADINGX":                                                              replyAnswer,
		"LOADING":                                                               replyDown,
		"":                                                                      replyAnswer,
	} {
		assert.Equal(t, want, replyClass(msg), "%q", msg)
	}
}

func TestBreakerStates(t *testing.T) {
	var opened, closed atomic.Int32
	b := NewBreaker(BreakerOptions{Threshold: 2, Cooldown: time.Hour, OnOpen: func() { opened.Add(1) }, OnClose: func() { closed.Add(1) }})
	pastCooldown := func() { b.openedAt.Store(time.Now().Add(-2 * time.Hour).UnixNano()) }

	ok, probe := b.allow()
	require.True(t, ok)
	require.False(t, probe)

	b.failure(false)
	b.success(false)
	b.failure(false)
	require.Equal(t, Closed, b.State(), "a success in between restarts the count")
	b.failure(false)
	require.Equal(t, Open, b.State())
	require.Equal(t, uint64(1), b.Opens())
	require.Equal(t, int32(1), opened.Load())

	ok, _ = b.allow()
	require.False(t, ok, "within the cooldown")

	// One probe among concurrent calls.
	pastCooldown()
	var probes, allowed atomic.Int32
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if ok, probe := b.allow(); ok {
				allowed.Add(1)
				if probe {
					probes.Add(1)
				}
			}
		})
	}
	wg.Wait()
	require.Equal(t, int32(1), allowed.Load())
	require.Equal(t, int32(1), probes.Load())
	require.Equal(t, HalfOpen, b.State())

	// A non-probe outcome (a call started before the opening) changes nothing.
	b.success(false)
	b.abandon(false)
	require.Equal(t, HalfOpen, b.State())

	// Abandoned: open again, and the next call is a probe at once.
	b.abandon(true)
	require.Equal(t, Open, b.State())
	ok, probe = b.allow()
	require.True(t, ok)
	require.True(t, probe)

	// Failed: open for another cooldown, no new opening counted.
	b.failure(true)
	require.Equal(t, Open, b.State())
	ok, _ = b.allow()
	require.False(t, ok)
	require.Equal(t, uint64(1), b.Opens())
	require.Equal(t, int32(1), opened.Load())

	// Succeeded: closed.
	pastCooldown()
	ok, probe = b.allow()
	require.True(t, ok && probe)
	b.success(true)
	require.Equal(t, Closed, b.State())
	require.Equal(t, int32(1), closed.Load())
	b.success(true) // a late duplicate does not close twice
	require.Equal(t, int32(1), closed.Load())

	// The count restarted at the opening: two more failures to open again.
	b.failure(false)
	require.Equal(t, Closed, b.State())
	b.failure(false)
	require.Equal(t, Open, b.State())
	require.Equal(t, uint64(2), b.Opens())
}

func TestBreakerThresholdIsAtLeastOne(t *testing.T) {
	b := NewBreaker(BreakerOptions{Threshold: 0, Cooldown: time.Hour})
	b.failure(false)
	assert.Equal(t, Open, b.State())
}

func TestNilBreaker(t *testing.T) {
	var b *Breaker
	ok, probe := b.allow()
	assert.True(t, ok)
	assert.False(t, probe)
	b.success(true)
	b.failure(true)
	b.abandon(true)
	assert.Equal(t, Closed, b.State())
	assert.Zero(t, b.Opens())
}

// Failures at one moment (a dropped connection failing every call in flight on it) do not
// open the breaker; failures that go on for MinSpan do. Late failures of calls that were in
// flight when it opened do not stretch its cooldown.
func TestBreakerNeedsFailuresOverItsSpan(t *testing.T) {
	b := NewBreaker(BreakerOptions{Threshold: 3, MinSpan: 50 * time.Millisecond, Cooldown: time.Hour})
	for range 100 {
		b.failure(false)
	}
	require.Equal(t, Closed, b.State(), "100 failures within the span")
	b.success(false)
	require.Zero(t, b.firstFail.Load(), "a success starts the count over")

	b.failure(false)
	b.firstFail.Store(time.Now().Add(-time.Second).UnixNano()) // as if that one was long ago
	b.failure(false)
	require.Equal(t, Closed, b.State(), "two failures, under the threshold")
	b.failure(false)
	require.Equal(t, Open, b.State(), "three failures over more than the span")
	opened := b.openedAt.Load()
	b.failure(false)
	require.Equal(t, opened, b.openedAt.Load(), "a late failure does not move the opening")
	require.EqualValues(t, 1, b.Opens())
}

// split is a bound as the three things a test looks at.
func split(b bound) (context.Context, context.CancelFunc, func() bool) {
	return b.ctx, b.cancel, b.timedOut
}
