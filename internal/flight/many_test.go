package flight_test

import (
	"context"
	"errors"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/flight"
)

// One batch load for the keys nobody loads yet; the others join the loads in flight, and
// single loads join a batch's keys.
func TestDoManyJoinsAndIsJoined(t *testing.T) {
	g, _ := newGroup[int](t)
	ctx := context.Background()
	release := make(chan struct{})
	started := make(chan struct{})
	single := make(chan int)
	go func() {
		v, _ := g.Do(ctx, "a", func(context.Context) (int, error) { close(started); <-release; return 1, nil })
		single <- v
	}()
	<-started
	var batches atomic.Int64
	var loaded []string
	manyDone := make(chan map[string]int)
	batchStarted := make(chan struct{})
	go func() {
		vals, errs := g.DoMany(ctx, []string{"a", "b", "c", "b"}, func(_ context.Context, keys []string) (map[string]int, error) {
			batches.Add(1)
			loaded = append([]string(nil), keys...)
			close(batchStarted)
			<-release
			return map[string]int{"b": 2}, nil // c is not returned
		})
		require.ErrorIs(t, errs["c"], flight.ErrMissing)
		manyDone <- vals
	}()
	<-batchStarted
	joinedSingle := make(chan int)
	go func() {
		v, _ := g.Do(ctx, "b", func(context.Context) (int, error) { return -1, nil })
		joinedSingle <- v
	}()
	waitJoined(t, g, 2) // the batch joined "a", the single joined "b"
	close(release)
	require.Equal(t, 1, <-single)
	vals := <-manyDone
	require.Equal(t, map[string]int{"a": 1, "b": 2}, vals)
	require.Equal(t, 2, <-joinedSingle, "a single load of a batch's key gets the batch's value")
	sort.Strings(loaded)
	require.Equal(t, []string{"b", "c"}, loaded, "the batch loads only what nobody loads, each key once")
	require.EqualValues(t, 1, batches.Load())
}

// A batch that panics or fails gives every key the error; a batch whose callers all leave
// is cancelled.
func TestDoManyErrorsAndLeaving(t *testing.T) {
	g, _ := newGroup[int](t)
	_, errs := g.DoMany(context.Background(), []string{"x", "y"}, func(context.Context, []string) (map[string]int, error) { panic("boom") })
	var pe *flight.PanicError
	require.ErrorAs(t, errs["x"], &pe)
	require.ErrorAs(t, errs["y"], &pe)
	boom := errors.New("db down")
	_, errs = g.DoMany(context.Background(), []string{"x"}, func(context.Context, []string) (map[string]int, error) { return nil, boom })
	require.ErrorIs(t, errs["x"], boom)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	cancelled := make(chan struct{})
	_, errs = g.DoMany(ctx, []string{"p", "q"}, func(lctx context.Context, _ []string) (map[string]int, error) {
		<-lctx.Done()
		close(cancelled)
		return nil, lctx.Err()
	})
	require.ErrorIs(t, errs["p"], context.DeadlineExceeded)
	<-cancelled // the batch's context ended when its only caller left
	v, err := g.Do(context.Background(), "p", func(context.Context) (int, error) { return 7, nil })
	require.NoError(t, err)
	require.Equal(t, 7, v, "a fresh load, not the abandoned one")
}
