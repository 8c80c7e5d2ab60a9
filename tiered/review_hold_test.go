package tiered_test

// Review of 292e78d (held keys of unsettled own writes, l1.RenewMany) and b2c06ab (an eager
// refresh keeps its loader's value in L1). Every test checks, after the fact, that each
// instance serves what Redis holds (agrees), and that held keys come back to L1 (the hold
// count is balanced).

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/faultproxy"
	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// notInL1 reads key twice (the second after the first's fill is applied) and reports whether
// neither read was an L1 hit: the key is held out of L1.
func notInL1(c *tiered.Cache, g *tiered.Group[string], key string) (string, bool) {
	ctx := context.Background()
	v, _ := g.Get(ctx, key)
	c.WaitL1ForTest()
	hit := l1Hit(c, func() { v, _ = g.Get(ctx, key) })
	return v, !hit
}

// A Set held by CLIENT PAUSE WRITE past its timeout and past the keeper's PING timeout: the
// key stays out of L1 through a failed check (re-queued), Redis applies the SET when the pause
// ends, the next check releases the key, and then it is back in L1 with the new value.
func TestReviewHoldSurvivesFailedCheckThenReturns(t *testing.T) {
	s := redistest.Start(t)
	a := newCache(t, s)
	g := tiered.NewGroup[string](a, "hold1", time.Minute)
	armed(t, a, g)
	ctx := context.Background()
	raw := rawClient(t, s.Addr())
	require.NoError(t, g.Set(ctx, "k", "v0"))
	require.Equal(t, "v0", warm(t, a, g, "k"))

	s.Do("CLIENT", "PAUSE", "1300", "WRITE") // > keeper PING timeout (500 ms): one check fails
	require.Error(t, g.Set(ctx, "k", "v1"))
	for range 5 {
		v, held := notInL1(a, g, "k")
		require.True(t, held, "held key served from L1")
		if v == "v1" {
			break // applied: the pause is over
		}
		require.Equal(t, "v0", v)
	}
	require.Eventually(t, func() bool {
		return rawGet(t, raw, redisKey(t, g, "k")) != "" && a.HearInvalidationsForTest(ctx) == nil
	}, 5*time.Second, tick)
	require.Eventually(t, func() bool {
		v, err := g.Get(ctx, "k")
		a.WaitL1ForTest()
		return err == nil && v == "v1" && l1Hit(a, func() { _, _ = g.Get(ctx, "k") })
	}, 5*time.Second, tick, "the key never came back to L1: hold left unbalanced")
	agrees(t, raw, a, g, "k", "a")
}

// Many unsettled writes at once (Sets, loads, a batch), keys sharing stripes (300 keys over
// 4096 stripes), while the keeper checks: afterwards every key agrees with Redis, and every
// key comes back to L1.
func TestReviewHoldManyKeysBalanced(t *testing.T) {
	s := redistest.Start(t)
	a := newCache(t, s)
	b := newCache(t, s)
	ga := tiered.NewGroup[string](a, "hold2", time.Minute)
	gb := tiered.NewGroup[string](b, "hold2", time.Minute)
	armed(t, a, ga)
	armed(t, b, gb)
	ctx := context.Background()
	raw := rawClient(t, s.Addr())
	keys := make([]string, 300)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	for round := range 3 {
		s.Do("CLIENT", "PAUSE", "700", "WRITE")
		var wg sync.WaitGroup
		for w := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(keys); i += 6 {
					v := fmt.Sprintf("r%d-%d", round, i)
					switch i % 3 {
					case 0:
						_ = ga.Set(ctx, keys[i], v)
					case 1:
						_, _ = ga.GetOrLoad(ctx, keys[i], func(context.Context) (string, error) { return v, nil })
					default:
						_, _ = ga.Get(ctx, keys[i])
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = ga.GetOrLoadMany(ctx, keys[:100], func(_ context.Context, missing []string) (map[string]string, error) {
				out := map[string]string{}
				for _, m := range missing {
					out[m] = fmt.Sprintf("batch%d-%s", round, m)
				}
				return out, nil
			})
		}()
		wg.Wait()
		// The other instance writes some keys once the pause is over.
		require.Eventually(t, func() bool { return gb.Set(ctx, keys[round], fmt.Sprint("b", round)) == nil }, 5*time.Second, tick)
		require.Eventually(t, func() bool { return a.HearInvalidationsForTest(ctx) == nil }, 5*time.Second, tick)
		for _, k := range keys {
			agrees(t, raw, a, ga, k, fmt.Sprintf("round %d a", round))
		}
	}
	// The keeper releases on its next check; then every key fills again.
	a.KickTrackerForTest()
	var stuck []string
	for _, k := range keys {
		if rawGet(t, raw, redisKey(t, ga, k)) == "" {
			continue // never written (a Get-only key): a miss, nothing to fill
		}
		ok := false
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
			_, err := ga.Get(ctx, k)
			a.WaitL1ForTest()
			if err == nil && l1Hit(a, func() { _, _ = ga.Get(ctx, k) }) {
				ok = true
				break
			}
			a.KickTrackerForTest()
		}
		if !ok {
			stuck = append(stuck, k)
		}
	}
	require.Empty(t, stuck, "keys never back in L1 (a stripe held forever)")
}

// A Set swallowed by a black hole: the keeper's checks time out (L1 lost, flushed), the
// black hole ends with a reset, the listener reconnects, and the held key is released by the
// first check on the new connection: balanced, and coherent.
func TestReviewHoldAcrossDropAndReconnect(t *testing.T) {
	s := redistest.Start(t)
	p := faultproxy.Start(t, s.Addr())
	a := newCache(t, s, func(o *tiered.Options) { o.RedisURL = "redis://" + p.Addr() + "/0" })
	b := newCache(t, s)
	ga := tiered.NewGroup[string](a, "hold3", time.Minute)
	gb := tiered.NewGroup[string](b, "hold3", time.Minute)
	armed(t, a, ga)
	armed(t, b, gb)
	ctx := context.Background()
	raw := rawClient(t, s.Addr())
	require.NoError(t, ga.Set(ctx, "k", "v0"))
	warm(t, a, ga, "k")

	flushes := a.Stats().Flushes
	p.SetBlackhole(true)
	require.Error(t, ga.Set(ctx, "k", "v1"))
	require.Eventually(t, func() bool { return a.Stats().Flushes > flushes }, 10*time.Second, tick, "the keeper never gave the listener up")
	require.NoError(t, gb.Set(ctx, "k", "theirs"))
	p.SetBlackhole(false)
	require.Eventually(t, func() bool { return a.HearInvalidationsForTest(ctx) == nil }, 10*time.Second, tick)
	require.Eventually(t, func() bool {
		v, err := ga.Get(ctx, "k")
		a.WaitL1ForTest()
		return err == nil && v == "theirs" && l1Hit(a, func() { _, _ = ga.Get(ctx, "k") })
	}, 10*time.Second, tick, "never back in L1 after the reconnection")
	agrees(t, raw, a, ga, "k", "a")
	agrees(t, raw, b, gb, "k", "b")
}

// A held key and Close: every call returns, nothing leaks (goleak in TestMain).
func TestReviewHoldCloseWhileHeld(t *testing.T) {
	s := redistest.Start(t)
	a, err := tiered.New(context.Background(), tiered.Options{RedisURL: s.URL(), KeyPrefix: "t:"})
	require.NoError(t, err)
	g := tiered.NewGroup[string](a, "hold4", time.Minute)
	armed(t, a, g)
	s.Do("CLIENT", "PAUSE", "400", "WRITE")
	require.Error(t, g.Set(context.Background(), "k", "v1"))
	require.NoError(t, a.Close())
	_, err = g.Get(context.Background(), "k")
	require.ErrorIs(t, err, tiered.ErrClosed)
}

// refreshRig is an instance with eager refresh whose refresh loader blocks until released,
// and a second instance.
type refreshRig struct {
	a, b    *tiered.Cache
	ga, gb  *tiered.Group[string]
	entered chan struct{}
	release chan struct{}
	raw     func(key string) string
}

func newRefreshRig(t *testing.T, s *redistest.Server, name string) *refreshRig {
	r := &refreshRig{entered: make(chan struct{}, 1), release: make(chan struct{})}
	r.a = newCache(t, s, func(o *tiered.Options) { o.EagerRefresh = 0.5 })
	r.b = newCache(t, s)
	r.ga = tiered.NewGroup[string](r.a, name, 2*time.Second)
	r.gb = tiered.NewGroup[string](r.b, name, 2*time.Second)
	armed(t, r.a, r.ga)
	armed(t, r.b, r.gb)
	raw := rawClient(t, s.Addr())
	r.raw = func(key string) string { return rawGet(t, raw, redisKey(t, r.ga, key)) }
	return r
}

// start loads key on a, then hits it past half its TTL until the refresh's loader is
// running (and blocked), with opts.
func (r *refreshRig) start(t *testing.T, key string, opts ...tiered.CallOption) {
	ctx := context.Background()
	first := true
	load := func(context.Context) (string, error) {
		if first {
			first = false
			return "old", nil
		}
		r.entered <- struct{}{}
		<-r.release
		return "refreshed", nil
	}
	_, err := r.ga.GetOrLoad(ctx, key, load, opts...)
	require.NoError(t, err)
	warm(t, r.a, r.ga, key)
	require.Eventually(t, func() bool {
		_, _ = r.ga.GetOrLoad(ctx, key, load, opts...)
		select {
		case <-r.entered:
			return true
		default:
			return false
		}
	}, 5*time.Second, tick, "no refresh started")
}

// finish lets the refresh's loader return and waits until the refresh is done.
func (r *refreshRig) finish(t *testing.T) {
	close(r.release)
	// Refreshed, failed, or dropped for a write made meanwhile.
	require.Eventually(t, func() bool { return r.a.RefreshingForTest() == 0 }, 5*time.Second, tick)
	ctx := context.Background()
	require.NoError(t, r.a.HearInvalidationsForTest(ctx))
	require.NoError(t, r.b.HearInvalidationsForTest(ctx))
	r.a.WaitL1ForTest()
}

// Another instance writes the key while the refresh's loader runs; this instance Sets or
// Deletes it; the refresh is then dropped (it wrote unconditionally until the write made
// meanwhile was heard of), and what a keeps in L1 must be what Redis holds.
func TestReviewHoldRefreshRacesWriters(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for name, during := range map[string]func(r *refreshRig){
		"other instance Set": func(r *refreshRig) { require.NoError(t, r.gb.Set(ctx, "k", "theirs")) },
		"own Set":            func(r *refreshRig) { require.NoError(t, r.ga.Set(ctx, "k", "mine")) },
		"own Delete":         func(r *refreshRig) { require.NoError(t, r.ga.Delete(ctx, "k")) },
		"other Delete":       func(r *refreshRig) { require.NoError(t, r.gb.Delete(ctx, "k")) },
	} {
		t.Run(name, func(t *testing.T) {
			r := newRefreshRig(t, s, "rr-"+fmt.Sprint(len(name)))
			r.start(t, "k")
			during(r)
			r.finish(t)
			raw := rawClient(t, s.Addr())
			t.Logf("Redis holds %q", r.raw("k"))
			agrees(t, raw, r.a, r.ga, "k", "a")
			agrees(t, raw, r.b, r.gb, "k", "b")
		})
	}
}

// InvalidateTags (on either instance) or Clear while the refresh's loader runs: the value it
// loaded was read before, and must not be served afterwards, from L1 or Redis.
func TestReviewHoldRefreshAfterTagsOrClear(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for name, during := range map[string]func(r *refreshRig){
		"own InvalidateTags":   func(r *refreshRig) { require.NoError(t, r.a.InvalidateTags(ctx, "tg")) },
		"other InvalidateTags": func(r *refreshRig) { require.NoError(t, r.b.InvalidateTags(ctx, "tg")) },
		"own Clear":            func(r *refreshRig) { require.NoError(t, r.ga.Clear(ctx)) },
		"other Clear":          func(r *refreshRig) { require.NoError(t, r.gb.Clear(ctx)) },
	} {
		t.Run(name, func(t *testing.T) {
			r := newRefreshRig(t, s, fmt.Sprint("rt-", len(name), "-", name[:2]))
			r.start(t, "k", tiered.Tags("tg"))
			during(r)
			r.finish(t)
			v, err := r.ga.Get(ctx, "k")
			require.Error(t, err, "a serves %q, loaded before the invalidation", v)
			v, err = r.gb.Get(ctx, "k")
			require.Error(t, err, "b serves %q, loaded before the invalidation", v)
		})
	}
}

// The refresh's SET held past its timeout (CLIENT PAUSE WRITE): not kept, the key held,
// and once applied every instance agrees with Redis and the key returns to a's L1.
func TestReviewHoldRefreshUnsettled(t *testing.T) {
	s := redistest.Start(t)
	r := newRefreshRig(t, s, "ru")
	ctx := context.Background()
	r.start(t, "k")
	s.Do("CLIENT", "PAUSE", "700", "WRITE")
	r.finish(t) // a refresh error: the SET timed out
	_, held := notInL1(r.a, r.ga, "k")
	require.True(t, held)
	require.Eventually(t, func() bool { return r.a.HearInvalidationsForTest(ctx) == nil && r.raw("k") != "" }, 5*time.Second, tick)
	raw := rawClient(t, s.Addr())
	agrees(t, raw, r.a, r.ga, "k", "a")
	agrees(t, raw, r.b, r.gb, "k", "b")
	require.Eventually(t, func() bool {
		_, err := r.ga.Get(ctx, "k")
		r.a.WaitL1ForTest()
		return err == nil && l1Hit(r.a, func() { _, _ = r.ga.Get(ctx, "k") })
	}, 5*time.Second, tick, "never back in L1")
}

// Refreshes on a racing against Sets on b, right after (or before) the refresh's SET, many
// times: both instances agree with Redis after each round.
func TestReviewHoldRefreshStress(t *testing.T) {
	s := redistest.Start(t)
	a := newCache(t, s, func(o *tiered.Options) { o.EagerRefresh = 0.3 })
	b := newCache(t, s)
	ga := tiered.NewGroup[string](a, "rs", 150*time.Millisecond)
	gb := tiered.NewGroup[string](b, "rs", 150*time.Millisecond)
	armed(t, a, ga)
	armed(t, b, gb)
	raw := rawClient(t, s.Addr())
	ctx := context.Background()
	var n int
	var mu sync.Mutex
	load := func(context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		return fmt.Sprint("a-load-", n), nil
	}
	for round := range 60 {
		_, _ = ga.GetOrLoad(ctx, "k", load)
		start := a.Stats().Refreshes + a.Stats().RefreshErrors
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 200 {
				_, _ = ga.GetOrLoad(ctx, "k", load)
				st := a.Stats()
				if st.Refreshes+st.RefreshErrors > start {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			_ = gb.Set(ctx, "k", fmt.Sprint("b-", round))
		}()
		wg.Wait()
		require.Eventually(t, func() bool {
			_, _ = ga.GetOrLoad(ctx, "k", load)
			st := a.Stats()
			return st.Refreshes+st.RefreshErrors > start
		}, 3*time.Second, tick)
		require.NoError(t, a.HearInvalidationsForTest(ctx))
		agrees(t, raw, a, ga, "k", fmt.Sprint("round ", round, " a"))
		agrees(t, raw, b, gb, "k", fmt.Sprint("round ", round, " b"))
		// Expire, so that the next round loads and refreshes again.
		require.NoError(t, gb.Delete(ctx, "k"))
	}
}
