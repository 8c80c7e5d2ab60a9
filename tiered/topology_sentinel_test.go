package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// TestSentinelTopology connects two instances through three sentinels, kills the master
// (SIGKILL) under a steady read/write load, and checks that both follow the promoted
// replica, flush L1, and serve no stale value once the load stops.
func TestSentinelTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("sentinel topology: skipped with -short")
	}
	st := redistest.StartSentinel(t)
	ctx := context.Background()
	newSentinelCache := func(disableL1 bool) *tiered.Cache {
		c, err := tiered.New(ctx, tiered.Options{
			RedisURL: st.URL(), KeyPrefix: "synspirit:", DisableL1: disableL1,
			Timeout: 200 * time.Millisecond, BreakerCooldown: 50 * time.Millisecond,
		})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, c.Close()) })
		return c
	}
	a, b := newSentinelCache(false), newSentinelCache(false)
	require.Equal(t, tiered.Tracking, a.Mode())
	groups := []*tiered.Group[string]{
		tiered.NewGroup[string](a, "data:sentinel", time.Minute),
		tiered.NewGroup[string](b, "data:sentinel", time.Minute),
	}
	const nKeys = 16
	key := func(i int) string { return "k" + strconv.Itoa(i) }
	for i := 0; i < nKeys; i++ {
		require.NoError(t, groups[0].Set(ctx, key(i), "init"))
	}
	flushesA, flushesB := a.Stats().Flushes, b.Stats().Flushes

	var (
		seq          atomic.Int64
		killedAt     atomic.Int64 // unix nanos
		firstFail    atomic.Int64
		firstSuccess atomic.Int64 // first successful write after the first failure
		failedWrites atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() }) // also when a require fails
	defer stopWriters()
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			g := groups[w%2]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := key((w*7 + i) % nKeys)
				err := g.Set(ctx, k, fmt.Sprintf("w%d-%d", w, seq.Add(1)))
				now := time.Now().UnixNano()
				switch {
				case err != nil && killedAt.Load() == 0:
					// Before the kill (a deadline missed under load): not the failover's.
					time.Sleep(5 * time.Millisecond)
				case err != nil:
					failedWrites.Add(1)
					firstFail.CompareAndSwap(0, now)
					time.Sleep(5 * time.Millisecond)
				case firstFail.Load() != 0:
					firstSuccess.CompareAndSwap(0, now)
				}
				_, _ = g.Get(ctx, key((w*3+i)%nKeys))
				_, _ = g.Get(ctx, k)
			}
		}(w)
	}
	time.Sleep(500 * time.Millisecond)
	killedAt.Store(time.Now().UnixNano())
	st.Master.Stop()
	require.Eventually(t, func() bool { return firstSuccess.Load() != 0 }, 15*time.Second, 10*time.Millisecond,
		"writes never succeeded again after the master was killed")
	time.Sleep(500 * time.Millisecond) // keep the load on the new master for a while
	stopWriters()

	// The sentinels promoted the replica. The one that led the failover knows first; the
	// others learn it from its hello messages, on a loaded machine after the client did.
	st.WaitMaster(st.Replica.Addr(), 15*time.Second)
	ff, fs, k0 := firstFail.Load(), firstSuccess.Load(), killedAt.Load()
	t.Logf("master killed: first failed write after %v; unavailability window (first failed write -> first successful write) %v; %d failed writes",
		time.Duration(ff-k0).Round(time.Millisecond), time.Duration(fs-ff).Round(time.Millisecond), failedWrites.Load())
	require.Greater(t, a.Stats().Flushes, flushesA, "a lost connection flushes L1")
	require.Greater(t, b.Stats().Flushes, flushesB, "a lost connection flushes L1")

	// Quiescence: every read through either instance equals what the new master holds.
	time.Sleep(200 * time.Millisecond)
	truth := newSentinelCache(true)
	gt := tiered.NewGroup[string](truth, "data:sentinel", time.Minute)
	stale := 0
	for i := 0; i < nKeys; i++ {
		want, err := gt.Get(ctx, key(i))
		require.NoError(t, err)
		rk := redisKey(t, gt, key(i))
		require.Equal(t, 1, mustInt(t, st.Replica.Do("EXISTS", rk)), "the new master holds %s", rk)
		for n, g := range groups {
			var got string
			require.Eventually(t, func() bool {
				got, err = g.Get(ctx, key(i))
				return !errors.Is(err, tiered.ErrUnavailable) // the breaker may still be closing
			}, 5*time.Second, tick)
			require.NoError(t, err)
			if got != want {
				stale++
				t.Errorf("instance %d serves %q for %s, the master holds %q", n, got, key(i), want)
			}
		}
	}
	require.Zero(t, stale)
}

func mustInt(t *testing.T, r interface{ AsInt64() (int64, error) }) int {
	t.Helper()
	n, err := r.AsInt64()
	require.NoError(t, err)
	return int(n)
}
