package tiered_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

func TestGroupClearOnEveryInstance(t *testing.T) {
	for _, mode := range []tiered.InvalidationMode{tiered.Auto, tiered.BusOnly} {
		t.Run(mode.String(), func(t *testing.T) {
			s := redistest.Start(t)
			setMode := func(o *tiered.Options) { o.Invalidation = mode }
			a, b := newCache(t, s, setMode), newCache(t, s, setMode)
			ga := tiered.NewGroup[int](a, "data:list", time.Minute)
			gb := tiered.NewGroup[int](b, "data:list", time.Minute)
			other := tiered.NewGroup[int](a, "data:other", time.Minute)
			ctx := context.Background()
			for i := range 5 {
				require.NoError(t, ga.Set(ctx, strconv.Itoa(i), i))
				warm(t, a, ga, strconv.Itoa(i))
			}
			require.NoError(t, other.Set(ctx, "x", 1))
			keysBefore := s.Do("DBSIZE")

			require.NoError(t, gb.Clear(ctx))
			require.Eventually(t, func() bool {
				for i := range 5 {
					if _, err := ga.Get(ctx, strconv.Itoa(i)); err == nil {
						return false
					}
				}
				return true
			}, waitFor, tick, "a Clear on B empties the group on A")
			_, err := ga.Get(ctx, "0")
			require.ErrorIs(t, err, tiered.ErrNotFound)
			v, err := other.Get(ctx, "x")
			require.NoError(t, err, "other groups are untouched")
			require.Equal(t, 1, v)

			// O(1): no key was deleted or scanned; the old ones expire by themselves.
			n1, _ := keysBefore.AsInt64()
			n2, _ := s.Do("DBSIZE").AsInt64()
			require.Equal(t, n1, n2, "no key is new: the generation key is rewritten")

			// The group works in its new generation, on both instances.
			require.NoError(t, ga.Set(ctx, "0", 100))
			require.Eventually(t, func() bool { v, err := gb.Get(ctx, "0"); return err == nil && v == 100 }, waitFor, tick)
		})
	}
}

func TestFlushReachesEveryInstance(t *testing.T) {
	s := redistest.Start(t)
	a, b := newCache(t, s), newCache(t, s)
	ga := tiered.NewGroup[int](a, "g", time.Minute)
	ctx := context.Background()
	require.NoError(t, ga.Set(ctx, "k", 1))
	warm(t, a, ga, "k")
	flushes := a.Stats().Flushes
	require.NoError(t, b.Flush(ctx))
	require.Eventually(t, func() bool { return a.Stats().Flushes > flushes }, waitFor, tick)
	require.False(t, l1Hit(a, func() { _, _ = ga.Get(ctx, "k") }))
	v, err := ga.Get(ctx, "k")
	require.NoError(t, err, "Flush drops L1 only; Redis keeps the value")
	require.Equal(t, 1, v)
}

func TestBusOnlyIsChosenWithoutRESP3AndKeepsInstancesCoherent(t *testing.T) {
	s := redistest.Start(t)
	proto2 := func(o *tiered.Options) { o.RedisURL = s.URL("protocol=2") }
	a, b := newCache(t, s, proto2), newCache(t, s, proto2)
	require.Equal(t, tiered.BusOnly, a.Mode())
	require.Equal(t, tiered.BusOnly, a.Stats().Mode)
	ga := tiered.NewGroup[string](a, "g", time.Minute)
	gb := tiered.NewGroup[string](b, "g", time.Minute)
	ctx := context.Background()

	require.NoError(t, gb.Set(ctx, "k", "v1"))
	require.Equal(t, "v1", warm(t, a, ga, "k"))
	require.NoError(t, gb.Set(ctx, "k", "v2"))
	require.Eventually(t, func() bool { v, _ := ga.Get(ctx, "k"); return v == "v2" }, waitFor, tick)
	warm(t, a, ga, "k")
	require.NoError(t, gb.Delete(ctx, "k"))
	require.Eventually(t, func() bool { _, err := ga.Get(ctx, "k"); return err != nil }, waitFor, tick)
	require.Positive(t, a.Stats().Invalidations.Bus)
	require.Zero(t, a.Stats().Invalidations.Tracking)
}

func TestBusResubscribeFlushesL1(t *testing.T) {
	s := redistest.Start(t)
	a := newCache(t, s, func(o *tiered.Options) { o.Invalidation = tiered.BusOnly })
	ga := tiered.NewGroup[string](a, "g", time.Minute)
	ctx := context.Background()
	require.NoError(t, ga.Set(ctx, "k", "v"))
	warm(t, a, ga, "k")
	flushes := a.Stats().Flushes
	require.Positive(t, s.KillClients("TYPE", "pubsub"))
	require.Eventually(t, func() bool { return a.Stats().Flushes > flushes && a.Stats().Bus.Resets > 0 }, 2*time.Second, tick)
	require.False(t, l1Hit(a, func() { _, _ = ga.Get(ctx, "k") }))
}

func TestBusOnlyCapsL1TTL(t *testing.T) {
	s := redistest.Start(t)
	a := newCache(t, s, func(o *tiered.Options) {
		o.Invalidation = tiered.BusOnly
		o.L1TTL = 100 * time.Millisecond
		o.DisableBus = true // no messages at all: only the cap ends staleness
	})
	b := newCache(t, s)
	ga := tiered.NewGroup[string](a, "g", time.Hour)
	gb := tiered.NewGroup[string](b, "g", time.Hour)
	ctx := context.Background()
	require.NoError(t, ga.Set(ctx, "k", "v1"))
	warm(t, a, ga, "k")
	require.NoError(t, gb.Set(ctx, "k", "v2"))
	require.Eventually(t, func() bool { v, _ := ga.Get(ctx, "k"); return v == "v2" }, 2*time.Second, tick,
		"a lost message costs at most the L1 TTL cap")
}
