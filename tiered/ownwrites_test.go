package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// armed makes g's values eligible for L1 on c (its prefix tracked, as one in L1 shows) and
// waits until the invalidations of writes so far have arrived.
func armed[T any](t *testing.T, c *tiered.Cache, g *tiered.Group[T]) {
	t.Helper()
	var zero T
	require.NoError(t, g.Set(context.Background(), "arming", zero))
	warm(t, c, g, "arming")
}

// What this instance loaded is served from its L1 next, without a Redis read: its own writes
// reach its listener as no invalidation (NOLOOP), so nothing drops the value it filled from
// the load. A Set's value is not kept (the caller may change it), but Redis does not push the
// Set back to this instance either.
func TestOwnWritesStayInL1(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	g := tiered.NewGroup[string](c, "own", time.Minute, tiered.WithNotFoundTTL(time.Minute))
	armed(t, c, g)
	ctx := context.Background()
	tracking := c.Stats().Invalidations.Tracking

	cases := []struct {
		name  string
		load  func(key string) error
		check func(key string) error
	}{
		{"GetOrLoad", func(k string) error {
			_, err := g.GetOrLoad(ctx, k, func(context.Context) (string, error) { return "loaded", nil })
			return err
		}, func(k string) error {
			v, err := g.Get(ctx, k)
			require.Equal(t, "loaded", v)
			return err
		}},
		{"GetOrLoadMany", func(k string) error {
			_, err := g.GetOrLoadMany(ctx, []string{k}, func(_ context.Context, ks []string) (map[string]string, error) {
				return map[string]string{ks[0]: "batch"}, nil
			})
			return err
		}, func(k string) error {
			v, err := g.Get(ctx, k)
			require.Equal(t, "batch", v)
			return err
		}},
		{"cached miss", func(k string) error {
			_, err := g.GetOrLoad(ctx, k, func(context.Context) (string, error) { return "", tiered.ErrNotFound })
			require.ErrorIs(t, err, tiered.ErrNotFound)
			return nil
		}, func(k string) error {
			_, err := g.GetOrLoad(ctx, k, func(context.Context) (string, error) { return "", errors.New("the miss was not kept") })
			require.ErrorIs(t, err, tiered.ErrNotFound)
			return nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 5 {
				key := tc.name + strconv.Itoa(i)
				require.NoError(t, tc.load(key))
				require.NoError(t, c.HearInvalidationsForTest(ctx)) // a push for the load's write would have arrived by now
				c.WaitL1ForTest()
				before := c.Stats()
				hit := l1Hit(c, func() { require.NoError(t, tc.check(key)) })
				require.True(t, hit, "%s: the next read went to Redis (L2 hits +%d, misses +%d)", key,
					c.Stats().L2Hits-before.L2Hits, c.Stats().L2Misses-before.L2Misses)
			}
		})
	}
	require.NoError(t, g.Set(ctx, "set", "v"))
	require.NoError(t, c.HearInvalidationsForTest(ctx))
	require.Equal(t, tracking, c.Stats().Invalidations.Tracking, "the listener heard of this instance's own writes")
	v, err := g.Get(ctx, "set")
	require.NoError(t, err)
	require.Equal(t, "v", v)
}

// Two instances writing one key at once end up agreeing with Redis: whichever write Redis
// applied last is what both serve, from L1 or not, once they have heard of the other's.
func TestRacingWritesConverge(t *testing.T) {
	s := redistest.Start(t)
	a, b := newCache(t, s), newCache(t, s)
	ga := tiered.NewGroup[string](a, "race", time.Minute)
	gb := tiered.NewGroup[string](b, "race", time.Minute)
	armed(t, a, ga)
	armed(t, b, gb)
	raw, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.Addr()}, DisableCache: true})
	require.NoError(t, err)
	defer raw.Close()
	ctx := context.Background()
	key := redisKey(t, ga, "k")
	for round := range 300 {
		var wg sync.WaitGroup
		for i, g := range []*tiered.Group[string]{ga, gb, ga, gb} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := fmt.Sprintf("%d-%d", round, i)
				if i < 2 {
					_ = g.Set(ctx, "k", v)
				} else {
					_, _ = g.Get(ctx, "k") // a read racing the writes, which may fill L1 too
				}
			}()
		}
		wg.Wait()
		require.NoError(t, a.HearInvalidationsForTest(ctx))
		require.NoError(t, b.HearInvalidationsForTest(ctx))
		env, err := raw.Do(ctx, raw.B().Get().Key(key).Build()).ToString()
		require.NoError(t, err)
		for name, g := range map[string]*tiered.Group[string]{"a": ga, "b": gb} {
			v, err := g.Get(ctx, "k")
			require.NoError(t, err)
			require.Contains(t, env, strconv.Quote(v), "round %d: %s serves %q, Redis holds another value", round, name, v)
		}
	}
}
