package flight_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/synspirit/tiercache/internal/flight"
	"github.com/synspirit/tiercache/internal/lifetime"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newGroup is a Group whose Lifetime is closed when the test ends.
func newGroup[V any](t *testing.T) (*flight.Group[V], *lifetime.Lifetime) {
	t.Helper()
	life := lifetime.New()
	t.Cleanup(life.Close)
	return flight.New[V](life), life
}

// waitJoined waits until n callers have joined loads of g.
func waitJoined[V any](t *testing.T, g *flight.Group[V], n uint64) {
	t.Helper()
	require.Eventually(t, func() bool { return g.Joined() == n }, 5*time.Second, time.Millisecond)
}

func TestConcurrentCallersShareOneLoad(t *testing.T) {
	g, _ := newGroup[int](t)
	const callers = 16
	var loads atomic.Int32
	release := make(chan struct{})
	load := func(context.Context) (int, error) {
		loads.Add(1)
		<-release
		return 42, nil
	}
	var wg sync.WaitGroup
	results := make(chan int, callers)
	for range callers {
		wg.Go(func() {
			v, err := g.Do(context.Background(), "k", load)
			assert.NoError(t, err)
			results <- v
		})
	}
	waitJoined(t, g, callers-1)
	close(release)
	wg.Wait()
	close(results)
	for v := range results {
		assert.Equal(t, 42, v)
	}
	assert.Equal(t, int32(1), loads.Load())
	assert.Equal(t, uint64(callers-1), g.Joined())

	// Finished loads are not kept: the next caller loads again, and does not join.
	v, err := g.Do(context.Background(), "k", load)
	require.NoError(t, err)
	assert.Equal(t, 42, v)
	assert.Equal(t, int32(2), loads.Load())
	assert.Equal(t, uint64(callers-1), g.Joined())
}

func TestKeysLoadIndependently(t *testing.T) {
	g, _ := newGroup[string](t)
	releaseA := make(chan struct{})
	doneA := make(chan string)
	go func() {
		v, _ := g.Do(context.Background(), "a", func(context.Context) (string, error) { <-releaseA; return "A", nil })
		doneA <- v
	}()
	// b is not held up by a, which waits until b is done.
	v, err := g.Do(context.Background(), "b", func(context.Context) (string, error) { return "B", nil })
	require.NoError(t, err)
	assert.Equal(t, "B", v)
	close(releaseA)
	assert.Equal(t, "A", <-doneA)
	assert.Zero(t, g.Joined())
}

func TestErrorReachesEveryCaller(t *testing.T) {
	g, _ := newGroup[int](t)
	errLoad := errors.New("load failed")
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			v, err := g.Do(context.Background(), "k", func(context.Context) (int, error) { <-release; return 7, errLoad })
			assert.ErrorIs(t, err, errLoad)
			assert.Equal(t, 7, v, "the load's value comes with its error")
		})
	}
	waitJoined(t, g, 3)
	close(release)
	wg.Wait()
}

func TestPanicReachesEveryCallerAsPanicError(t *testing.T) {
	g, _ := newGroup[int](t)
	boom := errors.New("boom")
	release := make(chan struct{})
	var loads atomic.Int32
	const callers = 5
	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			v, err := g.Do(context.Background(), "k", func(context.Context) (int, error) {
				loads.Add(1)
				<-release
				panicInLoad(boom)
				return 1, nil
			})
			assert.Zero(t, v)
			errs <- err
		})
	}
	waitJoined(t, g, callers-1)
	close(release)
	wg.Wait()
	close(errs)
	require.Equal(t, int32(1), loads.Load())
	var first *flight.PanicError
	for err := range errs {
		var pe *flight.PanicError
		require.ErrorAs(t, err, &pe)
		if first == nil {
			first = pe
		}
		assert.Same(t, first, pe, "every caller gets the one PanicError")
		assert.ErrorIs(t, err, boom, "Unwrap gives the error the load panicked with")
	}
	assert.Equal(t, boom, first.Value)
	assert.Equal(t, "loader panicked: boom", first.Error())
	assert.NotContains(t, first.Error(), "\n")
	stack := string(first.Stack)
	assert.Contains(t, stack, "panicInLoad", "the stack is the panicking goroutine's, at the panic")
	assert.Contains(t, stack, "panic(")

	// The process survived, and the key is free again.
	v, err := g.Do(context.Background(), "k", func(context.Context) (int, error) { return 2, nil })
	require.NoError(t, err)
	assert.Equal(t, 2, v)
}

func panicInLoad(v any) { panic(v) }

func TestPanicWithAValueThatIsNotAnError(t *testing.T) {
	g, _ := newGroup[int](t)
	_, err := g.Do(context.Background(), "k", func(context.Context) (int, error) { panic("not an error") })
	var pe *flight.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "not an error", pe.Value)
	assert.Nil(t, pe.Unwrap())
	assert.Nil(t, errors.Unwrap(err))
	assert.Equal(t, "loader panicked: not an error", err.Error())
}

// A caller whose context ends leaves with its error; the load goes on for the others.
func TestWaiterThatGivesUpLeavesTheOthers(t *testing.T) {
	g, _ := newGroup[string](t)
	release := make(chan struct{})
	loadCtx := make(chan context.Context, 1)
	load := func(ctx context.Context) (string, error) {
		loadCtx <- ctx
		<-release
		return "v", ctx.Err()
	}
	stay := make(chan error, 1)
	go func() {
		v, err := g.Do(context.Background(), "k", load)
		assert.Equal(t, "v", v)
		stay <- err
	}()
	lctx := <-loadCtx

	ctx, cancel := context.WithCancel(context.Background())
	left := make(chan error, 1)
	go func() {
		v, err := g.Do(ctx, "k", load)
		assert.Empty(t, v)
		left <- err
	}()
	waitJoined(t, g, 1)
	cancel()
	require.ErrorIs(t, <-left, context.Canceled)
	require.NoError(t, lctx.Err(), "one caller is still waiting: the load goes on")

	close(release)
	require.NoError(t, <-stay)
}

// The first caller that gives up does not end the load either, if others wait.
func TestFirstCallerGivingUpDoesNotEndTheLoad(t *testing.T) {
	g, _ := newGroup[string](t)
	release := make(chan struct{})
	loadCtx := make(chan context.Context, 1)
	load := func(ctx context.Context) (string, error) {
		loadCtx <- ctx
		<-release
		return "v", ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := g.Do(ctx, "k", load); first <- err }()
	lctx := <-loadCtx
	second := make(chan error, 1)
	go func() { _, err := g.Do(context.Background(), "k", load); second <- err }()
	waitJoined(t, g, 1)

	cancel()
	require.ErrorIs(t, <-first, context.Canceled)
	require.NoError(t, lctx.Err())
	close(release)
	require.NoError(t, <-second)
}

// Once every caller has left, the load's context ends and the next caller starts afresh
// rather than joining a load nobody waits for.
func TestLoadEndsWhenEveryCallerHasLeft(t *testing.T) {
	g, _ := newGroup[string](t)
	firstCtx := make(chan context.Context, 1)
	firstDone := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(firstDone)
		_, err := g.Do(ctx, "k", func(lctx context.Context) (string, error) {
			firstCtx <- lctx
			<-lctx.Done()
			return "stale", lctx.Err()
		})
		assert.ErrorIs(t, err, context.Canceled)
	}()
	lctx := <-firstCtx
	cancel()
	<-firstDone
	<-lctx.Done() // the load's context ended
	assert.ErrorIs(t, lctx.Err(), context.Canceled)

	v, err := g.Do(context.Background(), "k", func(context.Context) (string, error) { return "fresh", nil })
	require.NoError(t, err)
	assert.Equal(t, "fresh", v)
	assert.Zero(t, g.Joined(), "the second caller started a load of its own")
}

// A caller whose context is done already gets its error and runs nothing.
func TestDoneContextRunsNothing(t *testing.T) {
	g, _ := newGroup[int](t)
	load := func(context.Context) (int, error) { t.Error("the load ran"); return 0, nil }
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := g.Do(cancelled, "k", load)
	assert.ErrorIs(t, err, context.Canceled)
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	_, err = g.Do(expired, "k", load)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

type ctxKey struct{}

// The load's context has the first caller's values, not its deadline or cancellation.
func TestLoadContextKeepsValuesNotDeadline(t *testing.T) {
	g, _ := newGroup[string](t)
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), ctxKey{}, "first"), time.Hour)
	defer cancel()
	v, err := g.Do(ctx, "k", func(lctx context.Context) (string, error) {
		_, hasDeadline := lctx.Deadline()
		assert.False(t, hasDeadline)
		assert.NotNil(t, lctx.Done(), "the load's context can end")
		s, _ := lctx.Value(ctxKey{}).(string)
		return s, nil
	})
	require.NoError(t, err)
	assert.Equal(t, "first", v)
}

// Closing the Lifetime ends the load's context and waits for the load.
func TestCloseCancelsAndWaitsForTheLoad(t *testing.T) {
	g, life := newGroup[string](t)
	started := make(chan struct{})
	var finished atomic.Bool
	got := make(chan error, 1)
	go func() {
		_, err := g.Do(context.Background(), "k", func(lctx context.Context) (string, error) {
			close(started)
			<-lctx.Done()
			finished.Store(true)
			return "", lctx.Err()
		})
		got <- err
	}()
	<-started
	life.Close()
	assert.True(t, finished.Load(), "Close returned before the load ended")
	assert.ErrorIs(t, <-got, context.Canceled)
}

// After Close, a load runs on its caller's goroutine, under its caller's context; it is
// still shared and still recovered.
func TestDoAfterCloseRunsOnTheCaller(t *testing.T) {
	g, life := newGroup[string](t)
	life.Close()
	ctx := context.WithValue(context.Background(), ctxKey{}, "caller")
	v, err := g.Do(ctx, "k", func(lctx context.Context) (string, error) {
		assert.NoError(t, lctx.Err(), "not the closed Lifetime's context")
		assert.Equal(t, "caller", lctx.Value(ctxKey{}))
		// The caller's own goroutine: its test function is on the stack (the frame, not
		// only this closure, TestDoAfterCloseRunsOnTheCaller.func1).
		assert.Contains(t, stack(), "TestDoAfterCloseRunsOnTheCaller(")
		return "v", nil
	})
	require.NoError(t, err)
	assert.Equal(t, "v", v)

	_, err = g.Do(ctx, "k", func(context.Context) (string, error) { panic("after close") })
	var pe *flight.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "after close", pe.Value)

	// Shared: a second caller joins the load the first runs.
	release := make(chan struct{})
	var loads atomic.Int32
	load := func(context.Context) (string, error) { loads.Add(1); <-release; return "shared", nil }
	first := make(chan string, 1)
	go func() { v, _ := g.Do(context.Background(), "s", load); first <- v }()
	require.Eventually(t, func() bool { return loads.Load() == 1 }, 5*time.Second, time.Millisecond)
	second := make(chan string, 1)
	go func() { v, _ := g.Do(context.Background(), "s", load); second <- v }()
	waitJoined(t, g, 1)
	close(release)
	assert.Equal(t, "shared", <-first)
	assert.Equal(t, "shared", <-second)
	assert.Equal(t, int32(1), loads.Load())
}

// A load started before Close runs on a goroutine of the Lifetime: not the caller's.
// A caller that may leave (a cancellable context) gets its load run on a goroutine of the
// Lifetime's; one that cannot (context.Background) runs it itself, saving the hand-off.
func TestLoadRunsOnTheLifetimesGoroutine(t *testing.T) {
	g, _ := newGroup[string](t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := g.Do(ctx, "k", func(context.Context) (string, error) { return stack(), nil })
	require.NoError(t, err)
	assert.NotContains(t, v, "TestLoadRunsOnTheLifetimesGoroutine(", "the test function's frame")
	assert.Contains(t, v, "lifetime.(*Lifetime).Go")

	v, err = g.Do(context.Background(), "k", func(lctx context.Context) (string, error) {
		require.NotNil(t, lctx.Done(), "the load's context still ends on Close")
		return stack(), nil
	})
	require.NoError(t, err)
	assert.Contains(t, v, "TestLoadRunsOnTheLifetimesGoroutine(", "run by the caller itself")
}

func stack() string {
	buf := make([]byte, 64<<10)
	return string(buf[:runtime.Stack(buf, false)])
}

func TestPanicErrorText(t *testing.T) {
	err := &flight.PanicError{Value: 3}
	assert.Equal(t, "loader panicked: 3", err.Error())
	assert.Nil(t, err.Unwrap())
	assert.True(t, strings.HasPrefix((&flight.PanicError{Value: context.Canceled}).Error(), "loader panicked: context canceled"))
	assert.ErrorIs(t, &flight.PanicError{Value: context.Canceled}, context.Canceled)
}

// After Forget, a new caller starts a load of its own; the callers of the forgotten one
// still get its result.
func TestForgetStartsAFreshLoad(t *testing.T) {
	life := lifetime.New()
	t.Cleanup(life.Close)
	g := flight.New[int](life)
	release := make(chan struct{})
	started := make(chan struct{})
	first := make(chan int)
	go func() {
		v, _ := g.Do(context.Background(), "k", func(context.Context) (int, error) {
			close(started)
			<-release
			return 1, nil
		})
		first <- v
	}()
	<-started
	g.Forget("k")
	v, err := g.Do(context.Background(), "k", func(context.Context) (int, error) { return 2, nil })
	require.NoError(t, err)
	require.Equal(t, 2, v, "a caller after Forget does not join the old load")
	close(release)
	require.Equal(t, 1, <-first, "the old load's caller gets its result")
	v, err = g.Do(context.Background(), "k", func(context.Context) (int, error) { return 3, nil })
	require.NoError(t, err)
	require.Equal(t, 3, v, "the old load, ending, did not leave anything behind")
}

// A load that calls runtime.Goexit gives its other callers an error, not a zero value
// that looks like a result.
func TestGoexitIsAnError(t *testing.T) {
	life := lifetime.New()
	t.Cleanup(life.Close)
	g := flight.New[int](life)
	started, release := make(chan struct{}), make(chan struct{})
	go func() {
		_, _ = g.Do(context.Background(), "k", func(context.Context) (int, error) {
			close(started)
			<-release
			runtime.Goexit()
			return 1, nil
		})
	}()
	<-started
	joined := make(chan error)
	go func() {
		_, err := g.Do(context.Background(), "k", func(context.Context) (int, error) { return 2, nil })
		joined <- err
	}()
	require.Eventually(t, func() bool { return g.Joined() == 1 }, time.Second, time.Millisecond)
	close(release)
	require.ErrorIs(t, <-joined, flight.ErrGoexit)
}

// A load its caller runs itself (a caller that cannot leave) runs under the Lifetime's own
// context with the caller's values: no context of its own, so that the Redis calls it makes
// share their deadlines with every other call (deadline.NewWithin).
func TestInlineLoadRunsUnderTheLifetimesContext(t *testing.T) {
	g, life := newGroup[string](t)
	ctx := context.WithValue(context.Background(), ctxKey{}, "caller") // values, no cancellation
	v, err := g.Do(ctx, "k", func(lctx context.Context) (string, error) {
		assert.True(t, lctx.Done() == life.Done(), "the Lifetime's Done: ended by Close, by nothing else")
		s, _ := lctx.Value(ctxKey{}).(string)
		return s, nil
	})
	require.NoError(t, err)
	assert.Equal(t, "caller", v)

	_, err = g.Do(context.Background(), "k", func(lctx context.Context) (string, error) {
		assert.True(t, lctx == life.Context(), "without values, the Lifetime's context itself")
		return "", nil
	})
	require.NoError(t, err)
}
