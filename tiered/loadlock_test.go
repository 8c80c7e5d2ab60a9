package tiered_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// stampede requests one cold key from 3 instances × 50 goroutines and returns how many
// times the loader ran.
func stampede(t *testing.T, lockTTL time.Duration) int64 {
	s := redistest.Start(t)
	var groups []*tiered.Group[string]
	for range 3 {
		c := newCache(t, s, func(o *tiered.Options) { o.LoadLockTTL = lockTTL })
		groups = append(groups, tiered.NewGroup[string](c, "cold", time.Minute))
	}
	var loads atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, g := range groups {
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				v, err := g.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) {
					loads.Add(1)
					time.Sleep(100 * time.Millisecond) // a slow query: every instance misses meanwhile
					return "v", nil
				})
				if err != nil || v != "v" {
					t.Errorf("GetOrLoad = %q, %v", v, err)
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	return loads.Load()
}

func TestDistributedStampedeProtection(t *testing.T) {
	without := stampede(t, 0)
	with := stampede(t, 5*time.Second)
	t.Logf("cold key, 3 instances × 50 goroutines: loader ran %d times without the load lock, %d with it", without, with)
	reliability(t, "stampede", map[string]any{"instances": 3, "goroutines_per_instance": 50, "loads_without_lock": without, "loads_with_lock": with})
	require.EqualValues(t, 3, without, "once per instance without the lock")
	require.EqualValues(t, 1, with, "once across all instances with it")
}

func TestLoadLockOfADeadInstanceExpires(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s, func(o *tiered.Options) { o.LoadLockTTL = 300 * time.Millisecond })
	g := tiered.NewGroup[string](c, "cold", time.Minute)
	rk := redisKey(t, g, "k")
	// A lock taken by an instance that died before storing the value.
	s.Do("SET", "t:tiercache:lock:"+rk[len("t:"):], "dead", "PX", "300")
	var loads atomic.Int64
	v, err := g.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) { loads.Add(1); return "v", nil })
	require.NoError(t, err)
	require.Equal(t, "v", v)
	require.EqualValues(t, 1, loads.Load())
	n, _ := s.Do("EXISTS", "t:tiercache:lock:"+rk[len("t:"):]).AsInt64()
	require.Zero(t, n, "the lock is released after the load")
}
