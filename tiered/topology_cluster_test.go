package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// TestClusterTopology runs two instances against a 3-master cluster (one replica each),
// given as redis://a,b,c: tracking invalidations from every master, group clears and
// bus-only mode over sharded pub/sub, and no stale L1 entry after a slot migration or a
// failover.
func TestClusterTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster topology: skipped with -short")
	}
	cl := redistest.StartCluster(t, redistest.WithReplicas(1))
	ctx := context.Background()
	a, b := newClusterCache(t, cl.URL(), tiered.Auto), newClusterCache(t, cl.URL(), tiered.Auto)
	require.Equal(t, tiered.Tracking, a.Mode())
	ga := tiered.NewGroup[string](a, "data:cl", time.Minute)
	gb := tiered.NewGroup[string](b, "data:cl", time.Minute)
	keys := keysOnEachMaster(t, cl, ga)

	t.Run("tracking from every master", func(t *testing.T) {
		for _, k := range keys {
			before := a.Stats().Invalidations.Tracking
			requireSeen(t, ga, gb, a, k, "v1")
			require.NoError(t, gb.Set(ctx, k, "v2"))
			requireEventuallyValue(t, ga, k, "v2")
			require.Greater(t, a.Stats().Invalidations.Tracking, before, "key %s on %s", k, cl.MasterOfKey(redisKey(t, ga, k)).Addr())
		}
	})

	t.Run("batches across masters", func(t *testing.T) {
		g := tiered.NewGroup[string](a, "data:batch", time.Minute)
		many := make([]string, 60) // keys in many slots, on every master
		for i := range many {
			many[i] = fmt.Sprint("k", i)
		}
		got, err := g.GetOrLoadMany(ctx, many, func(_ context.Context, missing []string) (map[string]string, error) {
			out := map[string]string{}
			for _, k := range missing {
				out[k] = "v" + k
			}
			return out, nil
		})
		require.NoError(t, err)
		require.Len(t, got, len(many))
		other := tiered.NewGroup[string](b, "data:batch", time.Minute)
		all, err := other.GetMany(ctx, many)
		require.NoError(t, err)
		require.Equal(t, got, all, "stored on every master, read back from each")
	})

	t.Run("group clear", func(t *testing.T) {
		k := keys[0]
		requireSeen(t, ga, gb, a, k, "before-clear")
		require.NoError(t, gb.Clear(ctx))
		require.Eventually(t, func() bool {
			_, err := ga.Get(ctx, k)
			return errors.Is(err, tiered.ErrNotFound)
		}, waitFor, tick)
	})

	t.Run("tags across masters", func(t *testing.T) {
		tags := make([]string, 12) // versions on every master: one MGET per slot when unknown
		for i := range tags {
			tags[i] = fmt.Sprint("t", i)
		}
		g := tiered.NewGroup[string](a, "data:tagged", time.Minute)
		for _, k := range keys {
			require.NoError(t, g.Set(ctx, k, "v-"+k, tiered.Tags(tags...)))
		}
		require.NoError(t, g.Set(ctx, "untouched", "u", tiered.Tags("other")))
		fresh := newClusterCache(t, cl.URL(), tiered.Auto) // knows no version yet
		gf := tiered.NewGroup[string](fresh, "data:tagged", time.Minute)
		gb := tiered.NewGroup[string](b, "data:tagged", time.Minute)
		for _, in := range []*tiered.Group[string]{g, gb, gf} {
			for _, k := range keys {
				v, err := in.Get(ctx, k)
				require.NoError(t, err)
				require.Equal(t, "v-"+k, v)
			}
		}
		require.NoError(t, b.InvalidateTags(ctx, tags[3], tags[7]))
		for _, in := range []*tiered.Group[string]{g, gb, gf} {
			for _, k := range keys {
				require.Eventually(t, func() bool {
					_, err := in.Get(ctx, k)
					return errors.Is(err, tiered.ErrNotFound)
				}, waitFor, tick, "key %s", k)
			}
			v, err := in.Get(ctx, "untouched")
			require.NoError(t, err)
			require.Equal(t, "u", v)
		}
	})

	t.Run("bus only", func(t *testing.T) {
		x, y := newClusterCache(t, cl.URL(), tiered.BusOnly), newClusterCache(t, cl.URL(), tiered.BusOnly)
		require.Equal(t, tiered.BusOnly, x.Mode())
		gx := tiered.NewGroup[string](x, "data:bus", time.Minute)
		gy := tiered.NewGroup[string](y, "data:bus", time.Minute)
		for _, k := range keysOnEachMaster(t, cl, gx) {
			requireSeen(t, gx, gy, x, k, "v1")
			require.NoError(t, gy.Set(ctx, k, "v2"))
			requireEventuallyValue(t, gx, k, "v2")
		}
		// A Clear travels by the bus alone here.
		k := keys[0]
		requireSeen(t, gx, gy, x, k, "before-clear")
		require.NoError(t, gy.Clear(ctx))
		require.Eventually(t, func() bool {
			_, err := gx.Get(ctx, k)
			return errors.Is(err, tiered.ErrNotFound)
		}, waitFor, tick)
		flushes := x.Stats().Flushes
		require.NoError(t, y.Flush(ctx))
		require.Eventually(t, func() bool { return x.Stats().Flushes > flushes }, waitFor, tick)
		require.Positive(t, x.Stats().Invalidations.Bus)
	})

	t.Run("bus after a failover of the channel's master", func(t *testing.T) {
		x, y := newClusterCache(t, cl.URL(), tiered.BusOnly), newClusterCache(t, cl.URL(), tiered.BusOnly)
		gx := tiered.NewGroup[string](x, "data:bus2", time.Minute)
		gy := tiered.NewGroup[string](y, "data:bus2", time.Minute)
		k := keys[0]
		requireSeen(t, gx, gy, x, k, "before")
		cl.Failover(cl.MasterOfKey("synspirit:tiercache:invalidate"))
		// Either the resubscription flushed x's L1 or the message came through: never stale.
		require.Eventually(t, func() bool { return gy.Set(ctx, k, "after") == nil }, 5*time.Second, tick)
		requireEventuallyValue(t, gx, k, "after")
		requireSeen(t, gx, gy, x, k, "after-2")
		require.NoError(t, gy.Set(ctx, k, "after-3"))
		// Under CI's load this once took over a second (x served "after-2" for a whole second);
		// the bus's counters say whether x was still moving its subscription to the new master.
		// The message, or the flush of a resubscription, must still come.
		if !assert.Eventually(t, func() bool { v, err := gx.Get(ctx, k); return err == nil && v == "after-3" }, 5*time.Second, tick) {
			t.Fatalf("x never served the write made after the failover; x's bus: %+v, y's bus: %+v", *x.Stats().Bus, *y.Stats().Bus)
		}
		require.NoError(t, gy.Clear(ctx))
		require.Eventually(t, func() bool {
			_, err := gx.Get(ctx, k)
			return errors.Is(err, tiered.ErrNotFound)
		}, waitFor, tick)
	})

	t.Run("slot migration", func(t *testing.T) {
		k := keys[1]
		requireSeen(t, ga, gb, a, k, "before-migration")
		rk := redisKey(t, ga, k)
		src := cl.MasterOfKey(rk)
		var dst *redistest.Server // a master now (an earlier subtest's failover swapped roles)
		for _, other := range keys {
			if m := cl.MasterOfKey(redisKey(t, ga, other)); m != src {
				dst = m
				break
			}
		}
		require.NotNil(t, dst)
		cl.MigrateKey(rk, dst)
		require.Equal(t, dst, cl.MasterOfKey(rk))
		requireEventuallyValue(t, ga, k, "before-migration")
		// The key's new master must report changes to A: fill A's L1 again, then write
		// through B.
		requireSeen(t, ga, gb, a, k, "after-migration")
		require.NoError(t, gb.Set(ctx, k, "after-migration-2"))
		requireEventuallyValue(t, ga, k, "after-migration-2")
	})

	t.Run("failover", func(t *testing.T) {
		k := keys[2]
		requireSeen(t, ga, gb, a, k, "before-failover")
		rk := redisKey(t, ga, k)
		old := cl.MasterOfKey(rk)
		promoted := cl.Failover(old) // coordinated: connections stay up, roles swap
		require.Equal(t, promoted, cl.MasterOfKey(rk))
		require.Eventually(t, func() bool { return gb.Set(ctx, k, "after-failover") == nil }, 5*time.Second, tick)
		requireEventuallyValue(t, ga, k, "after-failover")
		requireSeen(t, ga, gb, a, k, "after-failover-2")
		require.NoError(t, gb.Set(ctx, k, "after-failover-3"))
		requireEventuallyValue(t, ga, k, "after-failover-3")
	})

	t.Run("failover by kill", func(t *testing.T) {
		k := keys[0]
		requireSeen(t, ga, gb, a, k, "before-kill")
		rk := redisKey(t, ga, k)
		flushes := a.Stats().Flushes
		promoted := cl.FailoverByKill(cl.MasterOfKey(rk))
		require.Equal(t, promoted, cl.MasterOfKey(rk))
		// The tracker listens on masters only: killing a node it had a connection to flushes
		// L1; a node that became master by an earlier coordinated failover had none (its
		// invalidations came through the demoted master, by replication).
		t.Logf("flushes on the kill: %d", a.Stats().Flushes-flushes)
		require.Eventually(t, func() bool { return gb.Set(ctx, k, "after-kill") == nil }, 10*time.Second, tick)
		// A's data client learns the new topology on its own schedule (rueidis refreshes it
		// after errors): until then A's reads fail with ErrUnavailable, as they must, rather
		// than answer from a stale L1. Give it as long as B had.
		requireEventuallyValueWithin(t, ga, k, "after-kill", 10*time.Second)
		// L1 must work again once the topology is stable (the tracker must not stay down
		// because of the dead node).
		require.Eventually(t, func() bool {
			_, _ = ga.Get(ctx, k)
			return l1Hit(a, func() { _, _ = ga.Get(ctx, k) })
		}, 5*time.Second, 10*time.Millisecond, "L1 serves again after a failover")
		require.NoError(t, gb.Set(ctx, k, "after-kill-2"))
		requireEventuallyValue(t, ga, k, "after-kill-2")
	})
}

func newClusterCache(t *testing.T, url string, mode tiered.InvalidationMode) *tiered.Cache {
	t.Helper()
	c, err := tiered.New(context.Background(), tiered.Options{
		RedisURL: url, KeyPrefix: "synspirit:", Invalidation: mode,
		Timeout: 500 * time.Millisecond, BreakerCooldown: 50 * time.Millisecond,
		ExactL1Stats: true, // l1Hit counts hits: a sampled front hit would read as a miss
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c
}

// keysOnEachMaster returns one key of g per master of the cluster.
func keysOnEachMaster(t *testing.T, cl *redistest.Cluster, g redisKeyer) []string {
	t.Helper()
	byMaster := map[*redistest.Server]string{}
	var keys []string
	for i := 0; len(keys) < len(cl.Masters) && i < 1000; i++ {
		k := fmt.Sprintf("key-%d", i)
		m := cl.MasterOfKey(redisKey(t, g, k))
		if _, ok := byMaster[m]; !ok {
			byMaster[m] = k
			keys = append(keys, k)
		}
	}
	require.Len(t, keys, len(cl.Masters))
	return keys
}

// requireSeen sets key to v through writer and waits until reader serves v from its L1.
func requireSeen(t *testing.T, reader, writer *tiered.Group[string], rc *tiered.Cache, key, v string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, writer.Set(ctx, key, v))
	require.Eventually(t, func() bool {
		got, err := reader.Get(ctx, key)
		return err == nil && got == v && l1Hit(rc, func() { _, _ = reader.Get(ctx, key) })
	}, 5*time.Second, tick, "reader never served %q from L1", v)
}

// requireEventuallyValue waits (at most waitFor, 1 s) until g returns v for key.
func requireEventuallyValue(t *testing.T, g *tiered.Group[string], key, v string) {
	t.Helper()
	requireEventuallyValueWithin(t, g, key, v, waitFor)
}

// requireEventuallyValueWithin is requireEventuallyValue with its own patience.
func requireEventuallyValueWithin(t *testing.T, g *tiered.Group[string], key, v string, patience time.Duration) {
	t.Helper()
	ctx := context.Background()
	var last atomic.Value // "got (err)" of the latest read, for the failure message
	ok := assert.Eventually(t, func() bool {
		got, err := g.Get(ctx, key)
		last.Store(fmt.Sprintf("%q (%v)", got, err))
		return err == nil && got == v
	}, patience, tick)
	if !ok {
		t.Fatalf("want %q, last read %v", v, last.Load())
	}
}
