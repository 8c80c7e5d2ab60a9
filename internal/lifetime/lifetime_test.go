package lifetime_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/synspirit/tiercache/internal/lifetime"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestGoRunsAndCloseWaits(t *testing.T) {
	l := lifetime.New()
	started := make(chan struct{})
	var finished atomic.Bool
	require.True(t, l.Go(func() {
		close(started)
		<-l.Done() // runs until Close
		finished.Store(true)
	}))
	<-started
	assert.False(t, l.Closed())
	l.Close()
	assert.True(t, finished.Load(), "Close returned before the goroutine ended")
	assert.True(t, l.Closed())
}

func TestContextEndsAtStop(t *testing.T) {
	l := lifetime.New()
	ctx := l.Context()
	require.NoError(t, ctx.Err())
	select {
	case <-l.Done():
		t.Fatal("done before Stop")
	default:
	}
	l.Stop()
	<-ctx.Done()
	<-l.Done()
	assert.ErrorIs(t, ctx.Err(), context.Canceled)
	assert.True(t, l.Closed())
	l.Wait()
}

// Stop does not wait: a goroutine still running is waited for by Wait.
func TestStopDoesNotWait(t *testing.T) {
	l := lifetime.New()
	release := make(chan struct{})
	var finished atomic.Bool
	require.True(t, l.Go(func() { <-release; finished.Store(true) }))
	l.Stop()
	assert.False(t, finished.Load())
	assert.False(t, l.Go(func() { t.Error("ran after Stop") }))
	close(release)
	l.Wait()
	assert.True(t, finished.Load())
}

func TestGoAfterCloseDoesNotRun(t *testing.T) {
	l := lifetime.New()
	l.Close()
	var ran atomic.Bool
	assert.False(t, l.Go(func() { ran.Store(true) }))
	l.Close()
	assert.False(t, ran.Load())
}

func TestCloseIsIdempotentAndEveryCallWaits(t *testing.T) {
	l := lifetime.New()
	release := make(chan struct{})
	var finished atomic.Bool
	require.True(t, l.Go(func() { <-release; finished.Store(true) }))

	const closers = 8
	var wg sync.WaitGroup
	stopped := make(chan struct{}, closers)
	for range closers {
		wg.Go(func() {
			l.Close()
			assert.True(t, finished.Load(), "a Close returned before the goroutine ended")
			stopped <- struct{}{}
		})
	}
	<-l.Done() // at least one Close has stopped it
	close(release)
	wg.Wait()
	assert.Len(t, stopped, closers)
	l.Close() // once more, after the others: returns at once
}

// Go racing Close: every goroutine that Go reports started has run when Close returns, and
// none runs that Go refused.
func TestGoRacingClose(t *testing.T) {
	for range 20 {
		l := lifetime.New()
		var accepted, ran atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 50 {
					if l.Go(func() { ran.Add(1) }) {
						accepted.Add(1)
					}
				}
			})
		}
		l.Close()
		got := ran.Load() // what had run when Close returned
		wg.Wait()
		assert.Equal(t, accepted.Load(), got, "accepted after Close, or not waited for")
		assert.Equal(t, got, ran.Load())
	}
}

// A goroutine may start others; Close waits for all of them.
func TestNestedGo(t *testing.T) {
	l := lifetime.New()
	var inner atomic.Bool
	started := make(chan struct{})
	require.True(t, l.Go(func() {
		require.True(t, l.Go(func() { <-l.Done(); inner.Store(true) }))
		close(started)
	}))
	<-started
	l.Close()
	assert.True(t, inner.Load())
}

// Work entered on the caller's goroutine is waited for by Close, and refused after it.
func TestEnterLeave(t *testing.T) {
	l := lifetime.New()
	require.True(t, l.Enter())
	closed := make(chan struct{})
	go func() { l.Close(); close(closed) }()
	require.Eventually(t, l.Closed, time.Second, time.Millisecond)
	select {
	case <-closed:
		t.Fatal("Close returned while entered work was running")
	default:
	}
	l.Leave()
	<-closed
	require.False(t, l.Enter(), "after Close")
}
