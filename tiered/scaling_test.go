package tiered_test

// Coherence that scales: an instance hears only of writes to what it may hold in L1, and one
// key's write leaves every other key servable.

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/counter"
	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// Counter increments, writes to a group without L1, to a group the reader does not have,
// and to locks reach the reader as no invalidation at all; a write to a group it keeps in L1
// does.
func TestWritesOutsideL1GroupsReachNoInstance(t *testing.T) {
	s := redistest.Start(t)
	reader, writer := newCache(t, s), newCache(t, s)
	ctx := context.Background()
	articles := tiered.NewGroup[string](reader, "articles", time.Minute)
	_ = tiered.NewGroup[string](reader, "sessions", time.Minute, tiered.WithoutL1())
	require.NoError(t, articles.Set(ctx, "1", "hello"))
	warm(t, reader, articles, "1")

	likes := counter.FromCache(writer, counter.Options{})
	sessions := tiered.NewGroup[string](writer, "sessions", time.Minute, tiered.WithoutL1())
	other := tiered.NewGroup[string](writer, "other", time.Minute)
	writerArticles := tiered.NewGroup[string](writer, "articles", time.Minute)
	// The groups' first use creates their generation keys, which every instance hears of (a
	// generation is what a group's keys depend on): once per group, not per write.
	for _, g := range []*tiered.Group[string]{sessions, other, writerArticles} {
		_, _ = g.RedisKey(ctx, "k")
	}
	// Invalidations arrive in the order Redis applied the writes: once the reader has lost
	// "sync" to the writer's write of it, it has heard of everything before.
	require.NoError(t, writerArticles.Set(ctx, "sync", "1"))
	warm(t, reader, articles, "sync")
	require.NoError(t, writerArticles.Set(ctx, "sync", "2"))
	require.Eventually(t, func() bool { v, _ := articles.Get(ctx, "sync"); return v == "2" }, waitFor, tick)
	warm(t, reader, articles, "sync")
	before := reader.Stats().Invalidations.Tracking
	for i := range 200 {
		_, err := likes.Increment(ctx, counter.Key{Target: "article", ID: strconv.Itoa(i % 7), Counter: "views"}, 1)
		require.NoError(t, err)
		require.NoError(t, sessions.Set(ctx, strconv.Itoa(i), "s"))
		require.NoError(t, other.Set(ctx, strconv.Itoa(i), "o"))
	}
	// A marker write to a group the reader keeps in L1: once the reader has heard it, it has
	// heard everything sent before it.
	require.NoError(t, writerArticles.Set(ctx, "marker", "m"))
	require.Eventually(t, func() bool { return reader.Stats().Invalidations.Tracking > before }, waitFor, tick)
	require.Equal(t, before+1, reader.Stats().Invalidations.Tracking,
		"600 writes outside the reader's L1 groups reached it as invalidations")
	require.True(t, l1Hit(reader, func() { _, _ = articles.Get(ctx, "1") }), "and cost it no L1 entry")
}

// A write to one key makes no other key unservable, whatever stripe the two share.
func TestOneKeysWriteLeavesOtherKeysServable(t *testing.T) {
	s := redistest.Start(t)
	reader, writer := newCache(t, s), newCache(t, s)
	ctx := context.Background()
	r := tiered.NewGroup[string](reader, "articles", time.Minute)
	w := tiered.NewGroup[string](writer, "articles", time.Minute)
	const held = 200
	for i := range held {
		require.NoError(t, w.Set(ctx, "held"+strconv.Itoa(i), "v"))
		warm(t, reader, r, "held"+strconv.Itoa(i))
	}
	before := reader.Stats().Invalidations.Tracking
	const writes = 5000 // more than the 4096 stripes: every stripe is hit
	for i := range writes {
		require.NoError(t, w.Set(ctx, "other"+strconv.Itoa(i), "x"))
	}
	require.Eventually(t, func() bool { return reader.Stats().Invalidations.Tracking >= before+writes }, 5*time.Second, tick)
	lost := 0
	for i := range held {
		if !l1Hit(reader, func() { _, _ = r.Get(ctx, "held"+strconv.Itoa(i)) }) {
			lost++
		}
	}
	require.Zero(t, lost, "%d of %d held keys lost their L1 entry to writes of other keys", lost, held)

	require.NoError(t, w.Set(ctx, "held0", "new"))
	require.Eventually(t, func() bool { v, _ := r.Get(ctx, "held0"); return v == "new" }, waitFor, tick,
		"a key's own write still reaches it")
}

// No two (group, key) pairs share a Redis key, and names that reach the cache's own keys are
// refused.
func TestKeyLayoutIsUnambiguous(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	ctx := context.Background()
	user := tiered.NewGroup[string](c, "user", time.Minute)
	user42 := tiered.NewGroup[string](c, "user:42", time.Minute)
	require.NoError(t, user.Set(ctx, "42:age", "from user"))
	require.NoError(t, user42.Set(ctx, "age", "from user:42"))
	require.NotEqual(t, redisKey(t, user, "42:age"), redisKey(t, user42, "age"))
	v, err := user.Get(ctx, "42:age")
	require.NoError(t, err)
	require.Equal(t, "from user", v)
	require.Regexp(t, `^t:user@[0-9a-z]{1,13}:42:age$`, redisKey(t, user, "42:age"))

	for _, name := range []string{"tiercache", "tiercache:gen", "tiercache:lock:x", "tiercachex"} {
		require.ErrorIs(t, tiered.NewGroup[int](c, name, 0).Err(), tiered.ErrInvalidOptions, "group name %q", name)
	}
	count := tiered.NewGroup[int](c, "count", time.Minute)
	require.NoError(t, count.Set(ctx, "article:1:likes", 99))
	likes := counter.FromCache(c, counter.Options{})
	n, err := likes.Increment(ctx, counter.Key{Target: "article", ID: "1", Counter: "likes"}, 1)
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "a group named count does not write over counters")
}

// A group made after New keeps values in L1 once its prefix is tracked, and from then on
// hears of writes by other instances; so it does again after its listener reconnects.
func TestNewGroupsPrefixIsTrackedAndReArmed(t *testing.T) {
	s := redistest.Start(t)
	reader, writer := newCache(t, s), newCache(t, s)
	ctx := context.Background()
	r := tiered.NewGroup[string](reader, "late", time.Minute)
	w := tiered.NewGroup[string](writer, "late", time.Minute)
	require.NoError(t, w.Set(ctx, "k", "v1"))
	warm(t, reader, r, "k")
	require.NoError(t, w.Set(ctx, "k", "v2"))
	require.Eventually(t, func() bool { v, _ := r.Get(ctx, "k"); return v == "v2" }, waitFor, tick)

	s.Do("CLIENT", "KILL", "ID", clientID(t, s, "tiercache-tracking"))
	require.Eventually(t, func() bool { return clientIDOrEmpty(s, "tiercache-tracking") != "" }, waitFor, tick)
	warm(t, reader, r, "k")
	require.NoError(t, w.Set(ctx, "k", "v3"))
	require.Eventually(t, func() bool { v, _ := r.Get(ctx, "k"); return v == "v3" }, waitFor, tick,
		"the group's prefix is tracked again on the new connection")
}

// Past 1024 groups with L1, the listener tracks the whole key prefix instead of one prefix
// per group (Redis checks each new prefix against all others): coherence holds across the
// switch.
func TestManyGroupsTrackTheWholePrefix(t *testing.T) {
	s := redistest.Start(t)
	reader, writer := newCache(t, s), newCache(t, s)
	ctx := context.Background()
	r := tiered.NewGroup[string](reader, "first", time.Minute)
	w := tiered.NewGroup[string](writer, "first", time.Minute)
	require.NoError(t, w.Set(ctx, "k", "v1"))
	warm(t, reader, r, "k")
	for i := range 1100 {
		_ = tiered.NewGroup[string](reader, "g"+strconv.Itoa(i), time.Minute)
	}
	last := tiered.NewGroup[string](reader, "last", time.Minute)
	wlast := tiered.NewGroup[string](writer, "last", time.Minute)
	require.NoError(t, wlast.Set(ctx, "k", "a"))
	warm(t, reader, last, "k")
	warm(t, reader, r, "k")
	require.NoError(t, w.Set(ctx, "k", "v2"))
	require.NoError(t, wlast.Set(ctx, "k", "b"))
	require.Eventually(t, func() bool {
		v1, _ := r.Get(ctx, "k")
		v2, _ := last.Get(ctx, "k")
		return v1 == "v2" && v2 == "b"
	}, waitFor, tick, "writes to a group tracked before the switch and to one made after it are heard")
}
