package deadline

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNoTimeoutAddsNoDeadline(t *testing.T) {
	for _, b := range []*Bounds{nil, New(0), New(-time.Second)} {
		ctx, cancel := b.Context(context.Background())
		cancel()
		_, ok := ctx.Deadline()
		assert.False(t, ok)
		assert.Nil(t, ctx.Done())
	}
}

func TestEarlierCallerDeadlineIsKept(t *testing.T) {
	parent, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ctx, done := New(time.Minute).Context(parent)
	defer done()
	assert.Equal(t, parent, ctx)
}

func TestCancellableParentGetsItsOwnContext(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.Background())
	before := time.Now()
	ctx, done := New(time.Minute).Context(parent)
	defer done()
	d, ok := ctx.Deadline()
	require.True(t, ok)
	assert.False(t, d.Before(before.Add(time.Minute)))
	assert.True(t, d.Before(time.Now().Add(time.Minute+time.Second)))

	cancelParent()
	select {
	case <-ctx.Done():
	default:
		t.Fatal("cancelling the caller's context did not end the call's")
	}
	assert.ErrorIs(t, ctx.Err(), context.Canceled)
}

// oneShard returns Bounds whose calls all go to one shard, so that which context a call gets
// depends on time alone.
func oneShard(timeout time.Duration) *Bounds {
	b := New(timeout)
	b.shards = b.shards[:1]
	return b
}

func TestUncancellableParentsShareOneWindow(t *testing.T) {
	const timeout = time.Minute
	for {
		b := oneShard(timeout)
		start := time.Now()
		c1, done1 := b.Context(context.Background())
		c2, done2 := b.Context(context.TODO())
		end := time.Now()
		done1()
		done2()
		if end.Sub(start) >= b.window/2 {
			continue // preempted: the two calls may straddle a window's end; try again
		}
		assert.True(t, c1 == c2, "calls within one window share its context")
		d, ok := c1.Deadline()
		require.True(t, ok)
		assert.False(t, d.Before(start.Add(timeout)), "a call gets at least the timeout")
		assert.False(t, d.After(end.Add(timeout+b.window)), "and at most one window more")
		assert.NoError(t, c1.Err())
		return
	}
}

func TestShardsBoundTheContextsOfAWindow(t *testing.T) {
	b := New(time.Hour) // a window of 225 s: every call below falls in the first one
	seen := map[context.Context]bool{}
	for range 1000 {
		ctx, done := b.Context(context.Background())
		done()
		seen[ctx] = true
	}
	assert.LessOrEqual(t, len(seen), len(b.shards))
	assert.LessOrEqual(t, len(b.shards), maxShards)
}

func TestRenewKeepsAnOpenWindowAndReplacesAnEndedOne(t *testing.T) {
	b := oneShard(time.Minute)
	slot := &b.shards[0]
	t0 := time.Now()
	first := b.renew(slot, t0)
	assert.Same(t, first, slot.Load(), "installed")
	assert.Same(t, first, b.renew(slot, t0.Add(b.window/2)), "still open: kept, no new context")

	later := t0.Add(b.window)
	second := b.renew(slot, later)
	assert.NotSame(t, first, second, "ended: replaced")
	assert.Same(t, second, slot.Load())
	assert.True(t, later.Before(second.until))
	assert.NoError(t, first.ctx.Err(), "an ended window's context lives on for the calls that hold it")
}

func TestWindowGrowsWithTheTimeout(t *testing.T) {
	assert.Equal(t, MinWindow, New(time.Millisecond).window)
	assert.Equal(t, 100*time.Millisecond/16, New(100*time.Millisecond).window)
	assert.Equal(t, time.Hour/16, New(time.Hour).window, "few live windows whatever the timeout")
}

func TestWindowsEndAndRenew(t *testing.T) {
	b := oneShard(20 * time.Millisecond)
	first, done := b.Context(context.Background())
	done()
	require.Eventually(t, func() bool { return first.Err() != nil }, 5*time.Second, time.Millisecond)
	assert.ErrorIs(t, first.Err(), context.DeadlineExceeded)
	assert.ErrorIs(t, context.Cause(first), context.DeadlineExceeded)

	next, done := b.Context(context.Background())
	done()
	assert.NoError(t, next.Err(), "a call after the window's end gets a live context")
	d1, _ := first.Deadline()
	d2, _ := next.Deadline()
	assert.True(t, d2.After(d1))
}

type key struct{}

func TestValuesOfAnUncancellableParentAreKept(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "span"))
	cancel()
	parent := context.WithoutCancel(cancelled) // values, no cancellation
	b := New(10 * time.Millisecond)
	ctx, done := b.Context(parent)
	defer done()
	assert.Equal(t, "span", ctx.Value(key{}))
	assert.NoError(t, ctx.Err(), "the cancelled grandparent does not reach the call")
	_, ok := ctx.Deadline()
	require.True(t, ok)
	require.Eventually(t, func() bool { return ctx.Err() != nil }, 5*time.Second, time.Millisecond)
	assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
	assert.ErrorIs(t, context.Cause(ctx), context.DeadlineExceeded)
}

// detached is a home-made detached context: no cancellation, but its values (the context
// package's own keys included) come from a context that has been cancelled.
type detached struct{ context.Context }

func (detached) Done() <-chan struct{}       { return nil }
func (detached) Err() error                  { return nil }
func (detached) Deadline() (time.Time, bool) { return time.Time{}, false }

func TestCauseIsTheWindowsNotTheDetachedParents(t *testing.T) {
	gone := errors.New("client went away")
	req, cancel := context.WithCancelCause(context.WithValue(context.Background(), key{}, "span"))
	cancel(gone)
	b := New(10 * time.Millisecond)
	ctx, done := b.Context(detached{req})
	defer done()
	assert.Equal(t, "span", ctx.Value(key{}))
	require.Eventually(t, func() bool { return ctx.Err() != nil }, 5*time.Second, time.Millisecond)
	assert.ErrorIs(t, context.Cause(ctx), context.DeadlineExceeded)

	child, cancelChild := context.WithCancel(ctx) // attaches to the window, ended already
	defer cancelChild()
	assert.ErrorIs(t, child.Err(), context.DeadlineExceeded)
}
func TestSharedWindowAllocatesNothing(t *testing.T) {
	b := New(time.Minute)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		c, done := b.Context(ctx)
		done()
		_ = c
	})
	// A window renewal (a new context) every millisecond at most: well under one per call.
	assert.Less(t, allocs, 0.5)
}

func TestConcurrentCallsAllGetTheirTimeout(t *testing.T) {
	const timeout = 50 * time.Millisecond
	b := New(timeout)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				start := time.Now()
				ctx, done := b.Context(context.Background())
				d, ok := ctx.Deadline()
				done()
				if !ok || d.Before(start.Add(timeout)) {
					errs <- errors.New("a call got less than its timeout")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func BenchmarkContext(b *testing.B) {
	ctx := context.Background()
	b.Run("shared-window", func(b *testing.B) {
		bd := New(100 * time.Millisecond)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, done := bd.Context(ctx)
				done()
			}
		})
	})
	b.Run("context.WithTimeout", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
				_ = c.Done() // rueidis selects on it: the channel is made
				cancel()
			}
		})
	})
}

// A parent cancelled only with the Bounds' lifetime (the lifetime itself, or its context with
// a caller's values: a load's) shares a window, keeps its values, and ends when the lifetime
// does; a parent cancellable on its own still gets its own context.
func TestParentsOfTheLifetimeShareItsWindows(t *testing.T) {
	life, closeLife := context.WithCancel(context.Background())
	b := NewWithin(time.Minute, life)
	b.shards = b.shards[:1]
	load := WithValues(life, context.WithValue(context.Background(), key{}, "span"))
	for {
		start := time.Now()
		c1, done1 := b.Context(life)
		c2, done2 := b.Context(load)
		c3, done3 := b.Context(context.Background())
		end := time.Now()
		done1()
		done2()
		done3()
		if end.Sub(start) >= b.window/2 {
			continue // preempted: the calls may straddle a window's end; try again
		}
		assert.True(t, c1 == c3, "the lifetime's own context shares the window")
		assert.Equal(t, "span", c2.Value(key{}), "a load's values are kept")
		d2, _ := c2.Deadline()
		d3, _ := c3.Deadline()
		assert.Equal(t, d3, d2, "and it has the window's deadline")

		own, cancelOwn := context.WithCancel(load)
		c4, done4 := b.Context(own)
		assert.False(t, c4 == c3, "a parent cancellable on its own gets its own context")
		cancelOwn()
		assert.ErrorIs(t, c4.Err(), context.Canceled)
		done4()

		closeLife()
		for _, c := range []context.Context{c1, c2, c3} {
			assert.ErrorIs(t, c.Err(), context.Canceled, "the windows end with the lifetime")
		}
		return
	}
}

func TestWithValuesOfBackgroundIsTheContextItself(t *testing.T) {
	life, cancel := context.WithCancel(context.Background())
	defer cancel()
	assert.True(t, WithValues(life, context.Background()) == life)
	ctx := WithValues(life, context.WithValue(context.Background(), key{}, "v"))
	assert.Equal(t, "v", ctx.Value(key{}))
	assert.True(t, ctx.Done() == life.Done())
}
