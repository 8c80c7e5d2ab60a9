package tiered_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// warm makes sure c serves key from L1, and returns the value.
func warm[T any](t *testing.T, c *tiered.Cache, g *tiered.Group[T], key string) T {
	t.Helper()
	// The invalidations of the test's own writes first: one still on its way would drop the
	// entry from L1 after warm saw it there. (An error leaves the listener as the test made
	// it; L1 then decides whether the key reaches it.)
	_ = c.HearInvalidationsForTest(context.Background())
	var v T
	require.Eventually(t, func() bool {
		var err error
		return l1Hit(c, func() { v, err = g.Get(context.Background(), key) }) && err == nil
	}, waitFor, tick, "key %q never reached L1", key)
	return v
}

func TestTwoInstancesSeeEachOthersWrites(t *testing.T) {
	s := redistest.Start(t)
	a, b := newCache(t, s), newCache(t, s)
	require.Equal(t, tiered.Tracking, a.Mode())
	ga := tiered.NewGroup[string](a, "data:x", time.Minute)
	gb := tiered.NewGroup[string](b, "data:x", time.Minute)
	ctx := context.Background()

	require.NoError(t, gb.Set(ctx, "k", "v1"))
	require.Equal(t, "v1", warm(t, a, ga, "k"))

	require.NoError(t, gb.Set(ctx, "k", "v2"))
	require.Eventually(t, func() bool { v, _ := ga.Get(ctx, "k"); return v == "v2" }, waitFor, tick,
		"a Set on B must stop A serving the old value from L1")
	require.Equal(t, "v2", warm(t, a, ga, "k"))

	require.NoError(t, gb.Delete(ctx, "k"))
	require.Eventually(t, func() bool { _, err := ga.Get(ctx, "k"); return err != nil }, waitFor, tick,
		"a Delete on B must stop A serving the old value")
	_, err := ga.Get(ctx, "k")
	require.ErrorIs(t, err, tiered.ErrNotFound)
	require.Positive(t, a.Stats().Invalidations.Tracking)
}

// A plain Redis client that knows nothing of the library writes behind its back.
func TestForeignWritesInvalidateL1(t *testing.T) {
	s := redistest.Start(t)
	a := newCache(t, s)
	g := tiered.NewGroup[string](a, "g", time.Minute)
	ctx := context.Background()
	envelope := func(v string) string {
		p, _ := json.Marshal(v)
		return string(tiered.EnvelopeForTest(p, time.Now().Add(time.Minute).UnixMilli()))
	}
	cases := []struct {
		name  string
		write func(key string)
		want  func(v string, err error) bool
	}{
		{"SET", func(k string) { s.Do("SET", redisKey(t, g, k), envelope("theirs")) },
			func(v string, err error) bool { return err == nil && v == "theirs" }},
		{"DEL", func(k string) { s.Do("DEL", redisKey(t, g, k)) },
			func(_ string, err error) bool { return err != nil }},
		{"EXPIRE", func(k string) { s.Do("PEXPIRE", redisKey(t, g, k), "30") },
			func(_ string, err error) bool { return err != nil }},
		{"FLUSHALL", func(string) { s.Do("FLUSHALL") },
			func(_ string, err error) bool { return err != nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := "k-" + tc.name
			require.NoError(t, g.Set(ctx, key, "ours"))
			require.Equal(t, "ours", warm(t, a, g, key))
			tc.write(key)
			require.Eventually(t, func() bool { return tc.want(g.Get(ctx, key)) }, waitFor, tick)
		})
	}
}

func TestClientKillFlushesL1(t *testing.T) {
	s, a, g := warmKey(t, "v")
	ctx := context.Background()
	flushes := a.Stats().Flushes
	require.Positive(t, s.KillClients("TYPE", "normal"))
	require.Eventually(t, func() bool { return a.Stats().Flushes > flushes }, waitFor, tick,
		"a dropped connection means lost invalidations: L1 must be flushed")
	require.False(t, l1Hit(a, func() { _, _ = g.Get(ctx, "k") }), "the first read after the kill must not be an L1 hit")
	require.Equal(t, "v", warm(t, a, g, "k"))
}

func TestReadYourWrites(t *testing.T) {
	s := redistest.Start(t)
	a := newCache(t, s)
	g := tiered.NewGroup[int](a, "g", time.Minute)
	ctx := context.Background()
	for i := range 200 {
		require.NoError(t, g.Set(ctx, "k", i))
		v, err := g.Get(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, i, v, "after Set returns, this instance's Get returns the new value")
	}
}

// ristretto buffers sets of new keys and applies sets and deletes in its own order. These
// are the sequences known to bring old values back in raw ristretto; through the cache they
// must never be served.
func TestRistrettoPitfallsNeverServeStaleValues(t *testing.T) {
	s := redistest.Start(t)
	a := newCache(t, s)
	ctx := context.Background()
	g := tiered.NewGroup[string](a, "g", time.Minute)

	t.Run("two quick sets of a new key", func(t *testing.T) {
		for i := range 200 {
			key := "two-" + strconv.Itoa(i)
			require.NoError(t, g.Set(ctx, key, "first"))
			_, _ = g.Get(ctx, key) // fills L1 with "first" (buffered)
			require.NoError(t, g.Set(ctx, key, "second"))
			for range 3 {
				v, err := g.Get(ctx, key)
				require.NoError(t, err)
				require.Equal(t, "second", v)
			}
		}
	})
	t.Run("set then delete then get", func(t *testing.T) {
		for i := range 200 {
			key := "del-" + strconv.Itoa(i)
			require.NoError(t, g.Set(ctx, key, "v"))
			_, _ = g.Get(ctx, key)
			require.NoError(t, g.Delete(ctx, key))
			for range 3 {
				_, err := g.Get(ctx, key)
				require.ErrorIs(t, err, tiered.ErrNotFound)
			}
		}
	})
}

func TestL1NeverOutlivesL2(t *testing.T) {
	s := redistest.Start(t)
	a := newCache(t, s)
	g := tiered.NewGroup[string](a, "short", 150*time.Millisecond)
	ctx := context.Background()
	require.NoError(t, g.Set(ctx, "k", "v"))
	warm(t, a, g, "k")
	require.Eventually(t, func() bool { _, err := g.Get(ctx, "k"); return err != nil }, 2*time.Second, tick)
	_, err := g.Get(ctx, "k")
	require.ErrorIs(t, err, tiered.ErrNotFound)
}

func TestRedisOutage(t *testing.T) {
	s := redistest.Start(t)
	a := newCache(t, s, func(o *tiered.Options) { o.BreakerThreshold = 3 })
	g := tiered.NewGroup[string](a, "g", time.Minute)
	ctx := context.Background()
	require.NoError(t, g.Set(ctx, "old", "before the outage"))
	warm(t, a, g, "old")

	s.Stop()

	// Entries from before the outage are not served as fresh.
	require.Eventually(t, func() bool { _, err := g.Get(ctx, "old"); return err != nil }, waitFor, tick)
	_, err := g.Get(ctx, "old")
	require.ErrorIs(t, err, tiered.ErrUnavailable)

	// GetOrLoad keeps the service working through the loader.
	for i := range 10 {
		v, err := g.GetOrLoad(ctx, fmt.Sprint("k", i), func(context.Context) (string, error) { return "from db", nil })
		require.NoError(t, err)
		require.Equal(t, "from db", v)
	}
	err = g.Set(ctx, "k", "x")
	require.ErrorIs(t, err, tiered.ErrUnavailable)
	require.ErrorIs(t, g.Delete(ctx, "k"), tiered.ErrUnavailable)

	// After a few failures over at least 10 ms, the breaker stops waiting on Redis at all.
	require.Eventually(t, func() bool {
		_ = g.Set(ctx, "k", "x")
		return a.Stats().Breaker == tiered.BreakerOpen
	}, waitFor, time.Millisecond)
	require.Positive(t, a.Stats().BreakerOpens)

	s.Restart()
	// It closes by itself once Redis is back: calls reach Redis again.
	require.Eventually(t, func() bool { return g.Set(ctx, "k", "after") == nil }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, tiered.BreakerClosed, a.Stats().Breaker)
	v, err := g.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "after", v)
	_, err = g.Get(ctx, "old")
	require.ErrorIs(t, err, tiered.ErrNotFound, "the pre-outage value must not come back from L1")
}

func TestRedisCallDeadline(t *testing.T) {
	s := redistest.Start(t)
	a := newCache(t, s, func(o *tiered.Options) { o.Timeout = 50 * time.Millisecond })
	g := tiered.NewGroup[string](a, "g", time.Minute)
	ctx := context.Background()
	require.NoError(t, g.Set(ctx, "k", "v"))
	// A server that accepts but never answers: the per-call deadline, not the caller's,
	// ends the call.
	s.Do("CLIENT", "PAUSE", "2000", "ALL")
	_, err := g.Get(ctx, "k2")
	require.ErrorIs(t, err, tiered.ErrUnavailable)
}

// The listener connection alone is killed: L1 is flushed, and tracking is re-armed on a new
// connection, so later foreign writes are heard again.
func TestTrackingListenerReconnects(t *testing.T) {
	s, a, g := warmKey(t, "v1")
	ctx := context.Background()
	flushes := a.Stats().Flushes
	id := clientID(t, s, "tiercache-tracking")
	s.Do("CLIENT", "KILL", "ID", id)
	require.Eventually(t, func() bool { return a.Stats().Flushes >= flushes+2 }, 2*time.Second, tick,
		"flushed at the drop and again once the listener is back")
	require.Eventually(t, func() bool { return clientIDOrEmpty(s, "tiercache-tracking") != "" }, 2*time.Second, tick)

	warm(t, a, g, "k")
	p, _ := json.Marshal("v2")
	s.Do("SET", redisKey(t, g, "k"), string(tiered.EnvelopeForTest(p, time.Now().Add(time.Minute).UnixMilli())))
	require.Eventually(t, func() bool { v, _ := g.Get(ctx, "k"); return v == "v2" }, waitFor, tick)
}

func clientIDOrEmpty(s *redistest.Server, name string) string {
	list, err := s.Client().Do(context.Background(), s.Client().B().ClientList().Build()).ToString()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(strings.TrimPrefix(list, "txt:"), "\n") {
		fields := map[string]string{}
		for _, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok {
				fields[k] = v
			}
		}
		if fields["name"] == name {
			return fields["id"]
		}
	}
	return ""
}

func clientID(t *testing.T, s *redistest.Server, name string) string {
	t.Helper()
	id := clientIDOrEmpty(s, name)
	require.NotEmpty(t, id, "no client named %q", name)
	return id
}

// One health check of the listener that times out without an error (as in a process so busy
// that the reply waits in the run queue) keeps L1; a second one in a row flushes it and
// turns it off, and an answer turns it back on.
func TestTrackingKeeperToleratesOneSlowCheck(t *testing.T) {
	_, a, g := warmKey(t, "v1")
	ctx := context.Background()

	checks := make(chan struct{}, 16)
	answer := make(chan error, 16) // what each check returns, in order
	require.True(t, a.SetTrackerPingForTest(func(ctx context.Context, _ time.Duration) error {
		select {
		case err := <-answer:
			checks <- struct{}{} // this answer is taken: the keeper has acted on the previous one
			return err
		case <-ctx.Done(): // Close
			return ctx.Err()
		}
	}))
	t.Cleanup(func() { a.SetTrackerPingForTest(nil) })
	check := func(err error) {
		t.Helper()
		answer <- err
		a.KickTrackerForTest()
		select {
		case <-checks:
		case <-time.After(5 * time.Second):
			t.Fatal("the keeper did not check the listener")
		}
	}
	slow := fmt.Errorf("127.0.0.1:1: %w", context.DeadlineExceeded)

	flushes := a.Stats().Flushes
	check(slow)
	check(nil) // the keeper has acted on the slow answer once it takes the next one
	assert.Equal(t, flushes, a.Stats().Flushes, "one slow check flushed L1")
	assert.True(t, l1Hit(a, func() { _, _ = g.Get(ctx, "k") }), "one slow check turned L1 off")

	check(slow)
	check(slow)
	check(nil)
	require.Eventually(t, func() bool { return a.Stats().Flushes >= flushes+2 }, waitFor, tick,
		"two slow checks in a row: flushed, and flushed again when the listener answers")
	warm(t, a, g, "k")

	flushes = a.Stats().Flushes
	check(errors.New("connection refused"))
	check(nil)
	require.Eventually(t, func() bool { return a.Stats().Flushes >= flushes+2 }, waitFor, tick,
		"an error flushes at once, and again when the listener answers")
}

// A dropped listener connection flushes L1 at once, not when the listener is back: writes
// made while it is down are not heard, so no entry from before may be served meanwhile (a
// Redis restarted without its data, or a failover, makes that a stale read for as long as
// the keeper's back-off lasts, up to a second).
func TestTrackingDropFlushesBeforeTheListenerIsBack(t *testing.T) {
	s, a, g := warmKey(t, "v1")
	ctx := context.Background()
	// The keeper cannot bring the listener back while the test looks.
	a.SetTrackerPingForTest(func(context.Context, time.Duration) error { return errors.New("listener held down by the test") })
	t.Cleanup(func() { a.SetTrackerPingForTest(nil) })
	flushes := a.Stats().Flushes
	s.Do("CLIENT", "KILL", "ID", clientID(t, s, "tiercache-tracking"))
	require.Eventually(t, func() bool { return a.Stats().Flushes > flushes }, 2*time.Second, tick, "the drop flushed L1")

	// Another client's write, which the dropped listener cannot report.
	p, _ := json.Marshal("v2")
	s.Do("SET", redisKey(t, g, "k"), string(tiered.EnvelopeForTest(p, time.Now().Add(time.Minute).UnixMilli())))
	v, err := g.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v2", v, "served the entry from before the drop")
}
