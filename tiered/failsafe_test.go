package tiered_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

var errDB = errors.New("database down")

func failingLoader(context.Context) (string, error) { return "", errDB }

func TestFailSafeServesStaleWhenTheLoaderFails(t *testing.T) {
	s := redistest.Start(t)
	const maxStale = 400 * time.Millisecond
	a := newCache(t, s, func(o *tiered.Options) { o.FailSafeMaxStale = maxStale })
	b := newCache(t, s, func(o *tiered.Options) { o.FailSafeMaxStale = maxStale })
	ga := tiered.NewGroup[string](a, "g", 100*time.Millisecond)
	gb := tiered.NewGroup[string](b, "g", 100*time.Millisecond)
	ctx := context.Background()
	v, err := ga.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v1", nil })
	require.NoError(t, err)
	require.Equal(t, "v1", v)

	// Past the TTL: Get reports a miss (it never returns stale values)...
	require.Eventually(t, func() bool { _, err := gb.Get(ctx, "k"); return errors.Is(err, tiered.ErrNotFound) }, time.Second, tick)
	// ...and GetOrLoad with a failing loader serves the stale value, from Redis on an
	// instance that never held it.
	v, err = gb.GetOrLoad(ctx, "k", failingLoader)
	require.NoError(t, err)
	require.Equal(t, "v1", v)
	require.EqualValues(t, 1, b.Stats().FailSafeServed)

	// Never beyond the bound.
	require.Eventually(t, func() bool { _, err := gb.GetOrLoad(ctx, "k", failingLoader); return errors.Is(err, errDB) }, 2*time.Second, 10*time.Millisecond)
	_, err = ga.GetOrLoad(ctx, "k", failingLoader)
	require.ErrorIs(t, err, errDB)
}

func TestFailSafeServesTheLastValueWhenRedisAndTheLoaderFail(t *testing.T) {
	s := redistest.Start(t)
	const maxStale = 500 * time.Millisecond
	a := newCache(t, s, func(o *tiered.Options) { o.FailSafeMaxStale = maxStale })
	g := tiered.NewGroup[string](a, "g", time.Minute)
	ctx := context.Background()
	require.NoError(t, g.Set(ctx, "k", "last"))
	warm(t, a, g, "k")
	require.NoError(t, g.Set(ctx, "gone", "x"))
	warm(t, a, g, "gone")
	require.NoError(t, g.Delete(ctx, "gone")) // a known newer write: never served, even as a last resort

	s.Stop()
	require.Eventually(t, func() bool { _, err := g.Get(ctx, "k"); return err != nil }, waitFor, tick)
	v, err := g.GetOrLoad(ctx, "k", failingLoader)
	require.NoError(t, err)
	require.Equal(t, "last", v)
	require.Positive(t, a.Stats().FailSafeServed)
	_, err = g.GetOrLoad(ctx, "gone", failingLoader)
	require.ErrorIs(t, err, errDB)

	// The loader wins when it works.
	v, err = g.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "fresh", nil })
	require.NoError(t, err)
	require.Equal(t, "fresh", v)
}

func TestWithoutFailSafeLoaderErrorsAreReturned(t *testing.T) {
	s := redistest.Start(t)
	a := newCache(t, s)
	g := tiered.NewGroup[string](a, "g", 50*time.Millisecond)
	ctx := context.Background()
	require.NoError(t, g.Set(ctx, "k", "v"))
	require.Eventually(t, func() bool { _, err := g.GetOrLoad(ctx, "k", failingLoader); return errors.Is(err, errDB) }, time.Second, tick)
	require.Zero(t, a.Stats().FailSafeServed)
}
