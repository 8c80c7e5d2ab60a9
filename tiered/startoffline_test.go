package tiered_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/counter"
	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// A service restarted during a Redis outage must come up: with StartWithoutRedis, New
// succeeds, the cache behaves as in an outage, and it connects by itself when Redis is back,
// invalidations and L1 included.
func TestStartWithoutRedis(t *testing.T) {
	s := redistest.Start(t)
	s.Stop() // Restart brings it back on the same port

	_, err := tiered.New(context.Background(), tiered.Options{ExactL1Stats: true, RedisURL: s.URL(), KeyPrefix: "t:"})
	require.ErrorIs(t, err, tiered.ErrUnavailable, "without the option, New needs Redis")

	start := func(o *tiered.Options) { o.StartWithoutRedis = true }
	a := newCache(t, s, start)
	assert.Equal(t, tiered.Tracking, a.Mode())
	g := tiered.NewGroup[string](a, "g", time.Minute)
	ctx := context.Background()

	_, err = g.Get(ctx, "k")
	assert.ErrorIs(t, err, tiered.ErrUnavailable)
	assert.ErrorIs(t, g.Set(ctx, "k", "v0"), tiered.ErrUnavailable)
	v, err := g.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "from the loader", nil })
	require.NoError(t, err)
	assert.Equal(t, "from the loader", v)
	assert.False(t, l1Hit(a, func() {
		_, _ = g.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "x", nil })
	}), "no L1 without Redis")

	likes := counter.New(a.Redis(), counter.Options{KeyPrefix: "t:"})
	key := counter.Key{Target: "article", ID: "1", Counter: "likes"}
	_, err = likes.Increment(ctx, key, 1)
	assert.ErrorIs(t, err, tiered.ErrUnavailable, "a counter on Redis() fails as in an outage")

	s.Restart()
	up := time.Now()
	require.Eventually(t, func() bool { return g.Set(ctx, "k", "v1") == nil }, 10*time.Second, 10*time.Millisecond)
	writable := time.Since(up)
	a.KickTrackerForTest() // rather than wait for the keeper's back-off
	warm(t, a, g, "k")     // L1 turns on once the listener is connected
	reliability(t, "start-offline", map[string]any{"new_without_redis": "ok", "served_by_loader_while_down": 1,
		"ms_until_writes_after_start": writable.Milliseconds(), "ms_until_l1_on_after_start": time.Since(up).Milliseconds()})
	n, err := likes.Increment(ctx, key, 1)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)

	// Another instance's write is heard: tracking was armed when the listener connected.
	b := newCache(t, s)
	gb := tiered.NewGroup[string](b, "g", time.Minute)
	require.NoError(t, gb.Set(ctx, "k", "v2"))
	requireEventuallyValue(t, g, "k", "v2")
	// And the bus came up by itself: a Flush from b reaches a.
	warm(t, a, g, "k")
	require.Eventually(t, func() bool { return a.Stats().Bus != nil && a.Stats().Bus.Subscriptions > 0 }, 5*time.Second, tick)
	flushes := a.Stats().Flushes
	require.NoError(t, b.Flush(ctx))
	require.Eventually(t, func() bool { return a.Stats().Flushes > flushes }, waitFor, tick)
}

func TestStartWithoutRedisStartsNormallyWhenRedisIsUp(t *testing.T) {
	s := redistest.Start(t)
	a := newCache(t, s, func(o *tiered.Options) { o.StartWithoutRedis = true })
	g := tiered.NewGroup[string](a, "g", time.Minute)
	require.NoError(t, g.Set(context.Background(), "k", "v"))
	warm(t, a, g, "k")
}

func TestStartWithoutRedisRefusesWhatItCannotLearnOffline(t *testing.T) {
	s := redistest.Start(t)
	cases := map[string]tiered.Options{
		"bus-only":        {RedisURL: s.URL(), Invalidation: tiered.BusOnly},
		"RESP2":           {RedisURL: s.URL() + "?protocol=2"},
		"two addresses":   {RedisURL: "redis://127.0.0.1:1,127.0.0.1:2"},
		"sentinel":        {RedisURL: "redis://127.0.0.1:1?master_set=mymaster"},
		"own client":      {Redis: s.Client()},
		"keyspace events": {RedisURL: s.URL(), KeyspaceNotifications: true},
	}
	for name, o := range cases {
		t.Run(name, func(t *testing.T) {
			o.StartWithoutRedis = true
			c, err := tiered.New(context.Background(), o)
			if err == nil {
				_ = c.Close()
			}
			assert.ErrorIs(t, err, tiered.ErrInvalidOptions)
			assert.False(t, errors.Is(err, tiered.ErrUnavailable))
		})
	}
}

// What Redis answers is not an outage: bad credentials still fail New; a server that refuses
// CLIENT TRACKING gets bus-only invalidation, as without the option.
func TestStartWithoutRedisStillFailsOnAnswers(t *testing.T) {
	s := redistest.Start(t)
	s.SetUser("app", "right", "~*", "&*", "+@all")
	_, err := tiered.New(context.Background(), tiered.Options{ExactL1Stats: true, RedisURL: s.UserURL("app", "wrong"), StartWithoutRedis: true})
	require.ErrorIs(t, err, tiered.ErrUnavailable)
	assert.Contains(t, err.Error(), "authentication failed")

	s.SetUser("notrack", "pw", "~*", "&*", "+@all", "-client|tracking")
	c := newCache(t, s, func(o *tiered.Options) {
		o.RedisURL = s.UserURL("notrack", "pw")
		o.StartWithoutRedis = true
	})
	assert.Equal(t, tiered.BusOnly, c.Mode())
}
