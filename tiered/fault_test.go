package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/faultproxy"
	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// faultRun drives a mixed workload on several instances until stop is closed, and checks
// every result against the contract that holds whatever Redis does.
type faultRun struct {
	groups []*tiered.Group[string]
	stop   chan struct{}
	wg     sync.WaitGroup

	ops, loaderFallbacks, unavailable atomic.Int64
	mu                                sync.Mutex // protects violations and loadLatencies
	violations                        []string
	loadLatencies                     []time.Duration
}

func (f *faultRun) violate(format string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.violations) < 20 {
		f.violations = append(f.violations, fmt.Sprintf(format, a...))
	}
}

func (f *faultRun) start(workers int, loaderDelay time.Duration) {
	ctx := context.Background()
	for i, g := range f.groups {
		for w := range workers {
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				r := rand.New(rand.NewPCG(uint64(i), uint64(w)))
				for {
					select {
					case <-f.stop:
						return
					default:
					}
					f.ops.Add(1)
					key := "k" + strconv.Itoa(r.IntN(32))
					switch p := r.IntN(10); {
					case p < 5:
						start := time.Now()
						v, err := g.GetOrLoad(ctx, key, func(context.Context) (string, error) {
							f.loaderFallbacks.Add(1)
							time.Sleep(loaderDelay)
							return "loaded", nil
						})
						d := time.Since(start)
						if err != nil || v == "" {
							f.violate("GetOrLoad(%s) = %q, %v: must always serve a value", key, v, err)
						}
						f.mu.Lock()
						f.loadLatencies = append(f.loadLatencies, d)
						f.mu.Unlock()
					case p < 8:
						_, err := g.Get(ctx, key)
						f.check("Get", err)
					case p < 9:
						f.check("Set", g.Set(ctx, key, "w"+strconv.Itoa(r.IntN(1000))))
					default:
						f.check("Delete", g.Delete(ctx, key))
					}
				}
			}()
		}
	}
}

func (f *faultRun) check(op string, err error) {
	switch {
	case err == nil, errors.Is(err, tiered.ErrNotFound):
	case errors.Is(err, tiered.ErrUnavailable):
		f.unavailable.Add(1)
	default:
		f.violate("%s: %v: errors must be ErrNotFound or ErrUnavailable", op, err)
	}
}

func (f *faultRun) finish(t *testing.T) {
	close(f.stop)
	f.wg.Wait()
	require.Empty(t, f.violations)
}

func (f *faultRun) p99() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.loadLatencies) == 0 {
		return 0
	}
	slices.Sort(f.loadLatencies)
	return f.loadLatencies[len(f.loadLatencies)*99/100]
}

// checkNoStaleReads compares every instance with Redis for every key of the workload.
func checkNoStaleReads(t *testing.T, s *redistest.Server, groups []*tiered.Group[string]) int {
	t.Helper()
	ctx := context.Background()
	stale := 0
	for k := range 32 {
		key := "k" + strconv.Itoa(k)
		want, found := truth(t, s, groups[0], key)
		for i, g := range groups {
			got, err := g.Get(ctx, key)
			if found && (err != nil || got != want) || !found && !errors.Is(err, tiered.ErrNotFound) {
				stale++
				t.Errorf("instance %d, %s: got %q (%v), Redis holds %q (found %v)", i, key, got, err, want, found)
			}
		}
	}
	return stale
}

func TestFaultRedisKilledAndRestartedUnderLoad(t *testing.T) {
	s := redistest.Start(t)
	f := &faultRun{stop: make(chan struct{})}
	var caches []*tiered.Cache
	for range 3 {
		c := newCache(t, s, func(o *tiered.Options) { o.BreakerCooldown = 20 * time.Millisecond })
		caches = append(caches, c)
		f.groups = append(f.groups, tiered.NewGroup[string](c, "fault", time.Minute))
	}
	f.start(4, 0)
	const restarts = 4
	for range restarts {
		time.Sleep(150 * time.Millisecond) // load while up
		s.Stop()
		time.Sleep(150 * time.Millisecond) // load while down
		s.Restart()
	}
	time.Sleep(150 * time.Millisecond)
	f.finish(t)

	// Recovery: every instance reaches Redis again by itself.
	for _, g := range f.groups {
		require.Eventually(t, func() bool { return g.Set(context.Background(), "probe", "x") == nil }, 5*time.Second, 10*time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // quiescence
	stale := checkNoStaleReads(t, s, f.groups)
	var opens uint64
	for _, c := range caches {
		opens += c.Stats().BreakerOpens
	}
	t.Logf("killed and restarted redis %d times under load: %d ops on 3 instances, %d loader fallbacks, %d ErrUnavailable, %d breaker openings, %d stale reads after quiescence",
		restarts, f.ops.Load(), f.loaderFallbacks.Load(), f.unavailable.Load(), opens, stale)
	reliability(t, "kill-restart", map[string]any{"restarts": restarts, "ops": f.ops.Load(), "instances": 3,
		"loader_fallbacks": f.loaderFallbacks.Load(), "unavailable": f.unavailable.Load(), "breaker_opens": opens, "stale_after_quiescence": stale})
	require.Positive(t, opens)
	require.Zero(t, stale)
}

func TestFaultSlowAndSilentRedis(t *testing.T) {
	for _, fault := range []string{"latency", "blackhole"} {
		t.Run(fault, func(t *testing.T) {
			s := redistest.Start(t)
			p := faultproxy.Start(t, s.Addr())
			const deadline = 50 * time.Millisecond
			const loaderDelay = 5 * time.Millisecond
			c := newCache(t, s, func(o *tiered.Options) {
				o.RedisURL = "redis://" + p.Addr() + "/0"
				o.Timeout = deadline
				o.BreakerCooldown = 50 * time.Millisecond
			})
			f := &faultRun{stop: make(chan struct{}), groups: []*tiered.Group[string]{tiered.NewGroup[string](c, "fault", time.Minute)}}
			switch fault {
			case "latency":
				p.SetLatency(3 * deadline)
			case "blackhole":
				p.SetBlackhole(true)
			}
			f.start(8, loaderDelay)
			require.Eventually(t, func() bool { return c.Stats().Breaker != tiered.BreakerClosed }, 5*time.Second, tick, "the breaker opens")
			time.Sleep(300 * time.Millisecond) // load with the breaker open
			p99 := f.p99()
			ops := f.ops.Load()

			p.SetLatency(0)
			p.SetBlackhole(false)
			require.Eventually(t, func() bool { return c.Stats().Breaker == tiered.BreakerClosed }, 10*time.Second, 10*time.Millisecond,
				"the breaker closes by itself once Redis is healthy")
			f.finish(t)
			t.Logf("%s: %d ops, GetOrLoad p99 %v with a %v deadline and a %v loader; breaker opened %d times",
				fault, ops, p99, deadline, loaderDelay, c.Stats().BreakerOpens)
			reliability(t, "slow-"+fault, map[string]any{"ops": ops, "getorload_p99_ms": float64(p99.Microseconds()) / 1000,
				"deadline_ms": deadline.Milliseconds(), "loader_ms": loaderDelay.Milliseconds(), "breaker_opens": c.Stats().BreakerOpens})
			// Not a speed assertion: a bound ten times the budget only catches a call that hangs.
			require.Less(t, p99, 10*(deadline+loaderDelay))
		})
	}
}

func TestFaultConnectionResetsUnderLoad(t *testing.T) {
	s := redistest.Start(t)
	p := faultproxy.Start(t, s.Addr())
	f := &faultRun{stop: make(chan struct{})}
	for range 3 {
		c := newCache(t, s, func(o *tiered.Options) {
			o.RedisURL = "redis://" + p.Addr() + "/0"
			o.BreakerCooldown = 20 * time.Millisecond
		})
		f.groups = append(f.groups, tiered.NewGroup[string](c, "fault", time.Minute))
	}
	f.start(4, 0)
	const resets = 10
	for range resets {
		time.Sleep(50 * time.Millisecond)
		p.ResetAll()
	}
	time.Sleep(100 * time.Millisecond)
	f.finish(t)
	for _, g := range f.groups {
		require.Eventually(t, func() bool { return g.Set(context.Background(), "probe", "x") == nil }, 5*time.Second, 10*time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // quiescence
	stale := checkNoStaleReads(t, s, f.groups)
	t.Logf("%d connection resets under load: %d ops, %d ErrUnavailable, %d stale reads after quiescence", resets, f.ops.Load(), f.unavailable.Load(), stale)
	reliability(t, "resets", map[string]any{"resets": resets, "ops": f.ops.Load(), "instances": 3, "unavailable": f.unavailable.Load(), "stale_after_quiescence": stale})
	require.Zero(t, stale)
}
