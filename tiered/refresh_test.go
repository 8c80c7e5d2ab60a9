package tiered_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

func TestEagerRefresh(t *testing.T) {
	s := redistest.Start(t)
	var groups []*tiered.Group[int64]
	var caches []*tiered.Cache
	for range 3 {
		c := newCache(t, s, func(o *tiered.Options) { o.EagerRefresh = 0.5 })
		caches = append(caches, c)
		groups = append(groups, tiered.NewGroup[int64](c, "hot", 600*time.Millisecond))
	}
	ctx := context.Background()
	var version, loads atomic.Int64
	release := make(chan struct{})
	load := func(ctx context.Context) (int64, error) {
		loads.Add(1)
		if version.Load() > 0 {
			<-release // a slow refresh: callers must not wait for it
		}
		return version.Add(1), nil
	}
	v, err := groups[0].GetOrLoad(ctx, "k", load)
	require.NoError(t, err)
	require.EqualValues(t, 1, v)
	for i, c := range caches {
		warm(t, c, groups[i], "k")
	}

	// Past half the TTL, hits on every instance keep returning the current value at once and
	// start one refresh among them.
	require.Eventually(t, func() bool {
		for _, g := range groups {
			v, err := g.GetOrLoad(ctx, "k", load)
			require.NoError(t, err)
			require.EqualValues(t, 1, v, "the current value while the refresh runs")
		}
		return loads.Load() == 2
	}, time.Second, tick)
	close(release)
	// The refreshed value replaces the old one everywhere, before the old one expires.
	for _, g := range groups {
		require.Eventually(t, func() bool { v, _ := g.GetOrLoad(ctx, "k", load); return v == 2 }, time.Second, tick)
	}
	var refreshes uint64
	for _, c := range caches {
		refreshes += c.Stats().Refreshes
	}
	require.EqualValues(t, 1, refreshes, "one refresh across the instances")
}

// The instance that refreshed a key ahead of its expiry keeps the new value in its L1: its
// readers never leave L1 for it (its write reaches only the other instances, NOLOOP).
func TestEagerRefreshKeepsTheNewValueInL1(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s, func(o *tiered.Options) { o.EagerRefresh = 0.5 })
	g := tiered.NewGroup[int64](c, "hot", 600*time.Millisecond)
	ctx := context.Background()
	var version atomic.Int64
	load := func(context.Context) (int64, error) { return version.Add(1), nil }
	_, err := g.GetOrLoad(ctx, "k", load)
	require.NoError(t, err)
	require.EqualValues(t, 1, warm(t, c, g, "k"))
	require.Eventually(t, func() bool { // past half the TTL, a hit starts the refresh
		_, err := g.GetOrLoad(ctx, "k", load)
		require.NoError(t, err)
		return c.Stats().Refreshes == 1
	}, time.Second, tick)
	require.NoError(t, c.HearInvalidationsForTest(ctx))
	c.WaitL1ForTest()
	var v int64
	require.True(t, l1Hit(c, func() { v, err = g.Get(ctx, "k") }), "the refreshed value is read from Redis")
	require.NoError(t, err)
	require.EqualValues(t, 2, v)
}

// A write made while a refresh's loader runs stands: the refresh, whose value may predate
// it, does not overwrite it (before, the refreshed value replaced it in Redis: a lost update).
func TestEagerRefreshYieldsToAWriteMadeMeanwhile(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for _, who := range []string{"this instance", "another instance"} {
		t.Run(who, func(t *testing.T) {
			a := newCache(t, s, func(o *tiered.Options) { o.EagerRefresh = 0.5; o.KeyPrefix = "y" + who[:1] + ":" })
			b := newCache(t, s, func(o *tiered.Options) { o.KeyPrefix = "y" + who[:1] + ":" })
			ga := tiered.NewGroup[string](a, "hot", 600*time.Millisecond)
			gb := tiered.NewGroup[string](b, "hot", 600*time.Millisecond)
			writer := ga
			if who == "another instance" {
				writer = gb
			}
			var loads atomic.Int64
			entered, release := make(chan struct{}), make(chan struct{})
			load := func(context.Context) (string, error) {
				if loads.Add(1) == 1 {
					return "v1", nil
				}
				close(entered)
				<-release
				return "refreshed", nil
			}
			_, err := ga.GetOrLoad(ctx, "k", load)
			require.NoError(t, err)
			warm(t, a, ga, "k")
			require.Eventually(t, func() bool { // past half the TTL, a hit starts the refresh
				_, err := ga.GetOrLoad(ctx, "k", load)
				require.NoError(t, err)
				return loads.Load() == 2
			}, time.Second, tick)
			<-entered
			require.NoError(t, writer.Set(ctx, "k", "theirs"))
			require.NoError(t, a.HearInvalidationsForTest(ctx))
			close(release)
			require.Eventually(t, func() bool { return a.RefreshingForTest() == 0 }, waitFor, tick)
			require.NoError(t, a.HearInvalidationsForTest(ctx))
			require.NoError(t, b.HearInvalidationsForTest(ctx))
			for name, g := range map[string]*tiered.Group[string]{"a": ga, "b": gb} {
				v, err := g.Get(ctx, "k")
				require.NoError(t, err)
				require.Equal(t, "theirs", v, "%s", name)
			}
		})
	}
}
