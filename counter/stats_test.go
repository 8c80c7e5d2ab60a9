package counter

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
)

// Stats counts writes, reads, misses, loads and failures, each with the call that makes it.
func TestStats(t *testing.T) {
	s := redistest.Start(t)
	c := newCounters(t, s, Options{KeyPrefix: "st:"})
	ctx := context.Background()
	require.Equal(t, Stats{}, c.Stats())

	_, err := c.Increment(ctx, likes, 2)
	require.NoError(t, err)
	require.NoError(t, c.Set(ctx, views, 5, time.Minute))
	_, err = c.Get(ctx, likes, 0)
	require.NoError(t, err)
	_, err = c.GetMany(ctx, []Key{likes, views, {Target: "article", ID: "9", Counter: "likes"}})
	require.NoError(t, err)
	other := Key{Target: "article", ID: "7", Counter: "likes"}
	_, err = c.GetOrLoad(ctx, other, func(context.Context) (int64, error) { return 3, nil })
	require.NoError(t, err)
	missing := Key{Target: "article", ID: "8", Counter: "likes"}
	_, err = c.GetOrLoad(ctx, missing, func(context.Context) (int64, error) { return 0, errors.New("db down") })
	require.Error(t, err)
	require.NoError(t, c.Delete(ctx, other))
	require.Equal(t, Stats{Writes: 3, Reads: 8, Misses: 5, Loads: 2, LoadErrors: 1}, c.Stats(),
		"reads: Get 1, GetMany 3, two GetOrLoads 2 each (before and in the load), misses 1 + 2 + 2")

	s.Stop()
	_, err = c.Increment(ctx, likes, 1)
	require.ErrorIs(t, err, ErrUnavailable)
	require.Equal(t, uint64(1), c.Stats().Errors)
}
