package tiered_test

// Tags: InvalidateTags drops every value carrying one of the tags, in every group, on every
// instance, from L1 and Redis, in O(1) Redis work per tag.

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// tagKey is where a tag's version lives in Redis (caches made by newCache: prefix "t:").
func tagKey(tag string) string { return "t:tiercache:gen:@" + tag }

// An article and the list pages showing it carry its tag; invalidating the tag on one
// instance drops the article and those pages on both, from L1 and Redis, and leaves every
// other page cached.
func TestInvalidateTagsDropsTaggedValuesEverywhere(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	type site struct {
		c        *tiered.Cache
		articles *tiered.Group[string]
		pages    *tiered.Group[[]int]
	}
	var sites [2]site
	for i := range sites {
		c := newCache(t, s)
		sites[i] = site{c, tiered.NewGroup[string](c, "article", time.Hour), tiered.NewGroup[[]int](c, "page", time.Hour)}
	}
	a, b := sites[0], sites[1]
	var pageLoads atomic.Int64
	loadPage := func(ids ...int) func(context.Context) ([]int, error) {
		return func(context.Context) ([]int, error) { pageLoads.Add(1); return ids, nil }
	}
	require.NoError(t, a.articles.Set(ctx, "5", "five", tiered.Tags("article:5")))
	require.NoError(t, a.articles.Set(ctx, "6", "six", tiered.Tags("article:6")))
	_, err := a.pages.GetOrLoad(ctx, "p1", loadPage(5, 6), tiered.Tags("article:5", "article:6"))
	require.NoError(t, err)
	_, err = a.pages.GetOrLoad(ctx, "p2", loadPage(6, 7), tiered.Tags("article:6", "article:7"))
	require.NoError(t, err)
	require.EqualValues(t, 2, pageLoads.Load())
	for _, in := range sites {
		warm(t, in.c, in.articles, "5")
		warm(t, in.c, in.articles, "6")
		warm(t, in.c, in.pages, "p1")
		warm(t, in.c, in.pages, "p2")
	}

	require.NoError(t, b.c.InvalidateTags(ctx, "article:5"))
	for i, in := range sites {
		require.Eventually(t, func() bool {
			_, err := in.articles.Get(ctx, "5")
			return errors.Is(err, tiered.ErrNotFound)
		}, waitFor, tick, "instance %d still serves article 5", i)
		_, err := in.pages.Get(ctx, "p1")
		require.ErrorIs(t, err, tiered.ErrNotFound, "instance %d still serves page 1, which shows article 5", i)
		m, err := in.articles.GetMany(ctx, []string{"5", "6"})
		require.NoError(t, err)
		require.Equal(t, map[string]string{"6": "six"}, m, "instance %d: GetMany after the invalidation", i)
		require.True(t, l1Hit(in.c, func() {
			v, err := in.pages.Get(ctx, "p2")
			require.NoError(t, err)
			require.Equal(t, []int{6, 7}, v)
		}), "instance %d: page 2 does not show article 5 and stays in L1", i)
		require.True(t, l1Hit(in.c, func() {
			v, err := in.articles.Get(ctx, "6")
			require.NoError(t, err)
			require.Equal(t, "six", v)
		}), "instance %d: article 6 stays in L1", i)
	}
	// Page 1 is loaded again, once, and then served on both instances.
	for _, in := range sites {
		v, err := in.pages.GetOrLoad(ctx, "p1", loadPage(5, 6), tiered.Tags("article:5", "article:6"))
		require.NoError(t, err)
		require.Equal(t, []int{5, 6}, v)
	}
	require.EqualValues(t, 3, pageLoads.Load(), "page 1 reloaded once for both instances")
}

// InvalidateTags is O(1) in Redis per tag: one SET of the tag's version key, whatever number
// of values carry it, and the version key has a TTL (tag bookkeeping does not grow without
// bound: no sets of members, nothing to SCAN).
func TestInvalidateTagsIsOneWritePerTag(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	ctx := context.Background()
	g := tiered.NewGroup[string](c, "g", time.Hour)
	for i := range 500 {
		require.NoError(t, g.Set(ctx, strconv.Itoa(i), "v", tiered.Tags("common", "own:"+strconv.Itoa(i))))
	}
	keys, err := s.Do("DBSIZE").AsInt64()
	require.NoError(t, err)
	require.EqualValues(t, 500+501+1, keys, "500 values, 501 tag versions, 1 group generation: nothing else")
	ttl, err := s.Do("PTTL", tagKey("common")).AsInt64()
	require.NoError(t, err)
	require.Positive(t, ttl, "a tag's version key expires")

	before := commandCalls(t, s)
	require.NoError(t, c.InvalidateTags(ctx, "common"))
	after := commandCalls(t, s)
	require.Equal(t, map[string]int64{"set": 1, "publish": 1}, diffCalls(before, after), "InvalidateTags of a tag on 500 values")
	for i := range 500 {
		_, err := g.Get(ctx, strconv.Itoa(i))
		require.ErrorIs(t, err, tiered.ErrNotFound)
	}
}

// An L2 read of a tagged value whose tag versions the instance knows costs no more round
// trips than an untagged one.
func TestTaggedReadAddsNoRoundTrip(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	w := tiered.NewGroup[string](newCache(t, s), "g", time.Hour)
	// The tags' version keys are made before the reader exists: their creation, reported to
	// a reader that had already learnt them, would make it forget them and read them again.
	require.NoError(t, w.Set(ctx, "first", "v", tiered.Tags("x", "y")))
	r := tiered.NewGroup[string](newCache(t, s), "g", time.Hour, tiered.WithoutL1())
	_, err := r.Get(ctx, "first") // learns the versions of x and y
	require.NoError(t, err)
	require.NoError(t, w.Set(ctx, "tagged", "v", tiered.Tags("x", "y")))
	require.NoError(t, w.Set(ctx, "plain", "v"))

	before := commandCalls(t, s)
	_, err = r.Get(ctx, "plain")
	require.NoError(t, err)
	plain := diffCalls(before, commandCalls(t, s))
	before = commandCalls(t, s)
	_, err = r.Get(ctx, "tagged")
	require.NoError(t, err)
	require.Equal(t, plain, diffCalls(before, commandCalls(t, s)), "a tagged read sent more than an untagged one")
}

// A tag's version key lost (deleted, evicted, failover) never brings a value back: the new
// version is random, and no value recorded it.
func TestLostTagNeverResurrects(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	a := newCache(t, s)
	b := newCache(t, s)
	ga := tiered.NewGroup[string](a, "g", time.Hour)
	gb := tiered.NewGroup[string](b, "g", time.Hour)
	require.NoError(t, ga.Set(ctx, "old", "before", tiered.Tags("t")))
	require.NoError(t, b.InvalidateTags(ctx, "t"))
	s.Do("DEL", tagKey("t"))                                          // the new version is lost
	require.NoError(t, ga.Set(ctx, "new", "after", tiered.Tags("t"))) // and replaced
	for _, g := range []*tiered.Group[string]{ga, gb} {
		require.Eventually(t, func() bool {
			_, err := g.Get(ctx, "old")
			return errors.Is(err, tiered.ErrNotFound)
		}, waitFor, tick, "the invalidated value is back")
		v, err := g.Get(ctx, "new")
		require.NoError(t, err)
		require.Equal(t, "after", v)
	}
	// Garbage in the version key reads as a new version too.
	s.Do("SET", tagKey("t"), "not a version!")
	require.Eventually(t, func() bool {
		_, err := gb.Get(ctx, "new")
		return errors.Is(err, tiered.ErrNotFound)
	}, waitFor, tick)
}

// Fail-safe (FailSafeMaxStale) never serves a value whose tag was invalidated: not from Redis,
// not from L1, not with Redis down. (FusionCache and HybridCache users reported tagged values
// coming back through fail-safe and grace periods after RemoveByTag.)
func TestFailSafeNeverServesAnInvalidatedTag(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	c := newCache(t, s, func(o *tiered.Options) { o.FailSafeMaxStale = time.Hour })
	g := tiered.NewGroup[string](c, "g", time.Hour)
	failing := func(context.Context) (string, error) { return "", errors.New("database down") }

	// A value past its TTL, kept for fail-safe, served while its tag is untouched…
	v, err := g.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v", nil },
		tiered.Tags("t"), tiered.TTL(50*time.Millisecond))
	require.NoError(t, err)
	require.Equal(t, "v", v)
	require.Eventually(t, func() bool {
		v, err := g.GetOrLoad(ctx, "k", failing)
		return err == nil && v == "v" && c.Stats().FailSafeServed > 0
	}, waitFor, tick, "the stale value is not served while its tag is untouched")

	// …and never again once the tag is invalidated, from Redis or L1.
	require.NoError(t, c.InvalidateTags(ctx, "t"))
	_, err = g.GetOrLoad(ctx, "k", failing)
	require.ErrorContains(t, err, "database down")

	// With Redis down too.
	v, err = g.GetOrLoad(ctx, "k2", func(context.Context) (string, error) { return "v2", nil }, tiered.Tags("t2"))
	require.NoError(t, err)
	require.Equal(t, "v2", v)
	require.NoError(t, c.InvalidateTags(ctx, "t2"))
	s.Stop()
	_, err = g.GetOrLoad(ctx, "k2", failing)
	require.ErrorContains(t, err, "database down")
}

// The versions a GetOrLoad records are read before its loader runs: an InvalidateTags during
// the load (a write to what the loader reads) leaves the loaded value invalid, never current.
func TestTagInvalidatedDuringALoad(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	a := newCache(t, s)
	b := newCache(t, s)
	g := tiered.NewGroup[string](a, "g", time.Hour)
	gb := tiered.NewGroup[string](b, "g", time.Hour)
	require.NoError(t, g.Set(ctx, "warm", "w", tiered.Tags("t"))) // a knows t's version
	for _, viaLoader := range []bool{false, true} {
		key := "k" + strconv.FormatBool(viaLoader)
		v, err := g.GetOrLoad(ctx, key, func(ctx context.Context) (string, error) {
			if viaLoader {
				tiered.AddTags(ctx, "t") // before reading what t stands for
			}
			// The row is read, then written elsewhere, and its tag invalidated, before the
			// loader returns what it read.
			require.NoError(t, b.InvalidateTags(ctx, "t"))
			return "old row", nil
		}, tagsUnless(viaLoader, "t")...)
		require.NoError(t, err)
		require.Equal(t, "old row", v, "the caller gets what the loader returned")
		for _, in := range []*tiered.Group[string]{g, gb} {
			_, err := in.Get(ctx, key)
			require.ErrorIs(t, err, tiered.ErrNotFound, "viaLoader=%v: a value loaded before an invalidation of its tag is served", viaLoader)
		}
	}
}

func tagsUnless(cond bool, tags ...string) []tiered.CallOption {
	if cond {
		return nil
	}
	return []tiered.CallOption{tiered.Tags(tags...)}
}

// Loaders tag what they return: AddTags for every value of the call, AddTagsFor for one key of
// a batch; batch calls take Tags too.
func TestLoaderTags(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	c := newCache(t, s)
	g := tiered.NewGroup[string](c, "g", time.Hour)
	_, err := g.GetOrLoad(ctx, "one", func(ctx context.Context) (string, error) {
		tiered.AddTags(ctx, "a")
		return "1", nil
	})
	require.NoError(t, err)
	_, err = g.GetOrLoadMany(ctx, []string{"x", "y", "z"}, func(ctx context.Context, keys []string) (map[string]string, error) {
		tiered.AddTags(ctx, "batch")
		for _, k := range keys {
			tiered.AddTagsFor(ctx, k, "item:"+k)
		}
		return map[string]string{"x": "X", "y": "Y", "z": "Z"}, nil
	}, tiered.Tags("call"))
	require.NoError(t, err)

	present := func(keys ...string) map[string]string {
		m, err := g.GetMany(ctx, []string{"one", "x", "y", "z"})
		require.NoError(t, err)
		want := map[string]string{}
		for _, k := range keys {
			want[k] = map[string]string{"one": "1", "x": "X", "y": "Y", "z": "Z"}[k]
		}
		require.Equal(t, want, m)
		return m
	}
	present("one", "x", "y", "z")
	require.NoError(t, c.InvalidateTags(ctx, "item:y"))
	present("one", "x", "z")
	require.NoError(t, c.InvalidateTags(ctx, "a"))
	present("x", "z")
	require.NoError(t, c.InvalidateTags(ctx, "call"))
	present()

	// A loader's ErrNotFound cached as a miss carries the tags too.
	gm := tiered.NewGroup[string](c, "misses", time.Hour, tiered.WithNotFoundTTL(time.Hour))
	var loads atomic.Int64
	missing := func(context.Context) (string, error) { loads.Add(1); return "", tiered.ErrNotFound }
	for range 3 {
		_, err := gm.GetOrLoad(ctx, "404", missing, tiered.Tags("article:404"))
		require.ErrorIs(t, err, tiered.ErrNotFound)
	}
	require.EqualValues(t, 1, loads.Load())
	require.NoError(t, c.InvalidateTags(ctx, "article:404"))
	_, err = gm.GetOrLoad(ctx, "404", missing)
	require.ErrorIs(t, err, tiered.ErrNotFound)
	require.EqualValues(t, 2, loads.Load(), "the cached miss went with its tag")
}

// Bad tags are refused with ErrInvalidOptions, before anything is written.
func TestBadTags(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	ctx := context.Background()
	g := tiered.NewGroup[string](c, "g", time.Hour)
	for _, bad := range []string{"", "a\nb", "a\u0085b", "a\x7fb", "a\xffb", strings.Repeat("x", 1025)} {
		require.ErrorIs(t, g.Set(ctx, "k", "v", tiered.Tags(bad)), tiered.ErrInvalidOptions, "%q", bad)
		require.ErrorIs(t, c.InvalidateTags(ctx, bad), tiered.ErrInvalidOptions, "%q", bad)
	}
	_, err := g.Get(ctx, "k")
	require.ErrorIs(t, err, tiered.ErrNotFound)
	require.NoError(t, c.InvalidateTags(ctx))

	// The errors name the package once, and the group of a batch call.
	require.EqualError(t, c.InvalidateTags(ctx, ""), "tiered: invalidate tags: invalid options: empty tag")
	_, err = g.GetOrLoadMany(ctx, []string{"a"}, func(context.Context, []string) (map[string]string, error) { return nil, nil }, tiered.Tags(""))
	require.EqualError(t, err, "tiered: get or load many g: invalid options: empty tag")

	// A value carries at most MaxTagsPerValue tags; an invalidation takes any number.
	many := make([]string, 3*tiered.MaxTagsPerValue)
	for i := range many {
		many[i] = "t" + strconv.Itoa(i)
	}
	require.ErrorIs(t, g.Set(ctx, "k", "v", tiered.Tags(many...)), tiered.ErrInvalidOptions)
	require.NoError(t, g.Set(ctx, "k", "v", tiered.Tags(many[len(many)-1])))
	require.NoError(t, c.InvalidateTags(ctx, many...))
	_, err = g.Get(ctx, "k")
	require.ErrorIs(t, err, tiered.ErrNotFound, "the last of 192 invalidated tags dropped its value")
}

// In BusOnly mode InvalidateTags reaches the other instances through the bus.
func TestInvalidateTagsBusOnly(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	busOnly := func(o *tiered.Options) { o.Invalidation = tiered.BusOnly }
	a := newCache(t, s, busOnly)
	b := newCache(t, s, busOnly)
	ga := tiered.NewGroup[string](a, "g", time.Hour)
	gb := tiered.NewGroup[string](b, "g", time.Hour)
	require.NoError(t, ga.Set(ctx, "k", "v", tiered.Tags("t")))
	warm(t, b, gb, "k")
	require.NoError(t, a.InvalidateTags(ctx, "t"))
	require.Eventually(t, func() bool {
		_, err := gb.Get(ctx, "k")
		return errors.Is(err, tiered.ErrNotFound)
	}, waitFor, tick)
}

// commandCalls is Redis's count of calls per command so far (INFO commandstats).
func commandCalls(t *testing.T, s *redistest.Server) map[string]int64 {
	t.Helper()
	v, err := s.Do("INFO", "commandstats").ToAny()
	require.NoError(t, err)
	info, _ := v.(string)
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\r\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok || name == line {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		out[name], _ = strconv.ParseInt(n, 10, 64)
	}
	return out
}

// diffCalls is after − before, leaving out INFO itself, the keepers' PINGs, connection set-up
// (HELLO, CLIENT) and zero differences.
func diffCalls(before, after map[string]int64) map[string]int64 {
	d := map[string]int64{}
	for k, n := range after {
		// Not the commands of the test itself or of a connection being opened (rueidis dials
		// its pipelined connections as keys first map to them).
		if k != "info" && k != "ping" && k != "hello" && k != "client" && n != before[k] {
			d[k] = n - before[k]
		}
	}
	return d
}
