package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// The cache-aside race: a load reads nothing, its loader runs, and meanwhile the key is
// written (Set) or dropped (Delete), on this instance or another. The load's store must not
// go over that write: the loader may have read the data the write replaced, and Redis would
// then hold the old value until its TTL on every instance.

// loadRace is one case of the race: the loader of a load (single, or batch of "k" and
// "other") is held until the writer has written, then returns "loaded" for every key (or
// ErrNotFound for "k" with missing).
type loadRace struct {
	batch, missing bool
	op             string // "Set" or "Delete"
	who            string // "this instance" or "another instance"
	noL1           bool   // the loading cache has DisableL1
	present        bool   // Redis holds a value past its TTL (kept by FailSafeMaxStale) when the load reads
}

func (r loadRace) name() string {
	n := fmt.Sprintf("%s on %s", r.op, r.who)
	if r.present {
		n += " of a stale value"
	}
	if r.noL1 {
		n += " without L1"
	}
	return n
}

func (r loadRace) run(t *testing.T, s *redistest.Server, prefix string) {
	ctx := context.Background()
	a := newCache(t, s, func(o *tiered.Options) { o.KeyPrefix = prefix; o.DisableL1 = r.noL1; o.FailSafeMaxStale = time.Minute })
	b := newCache(t, s, func(o *tiered.Options) { o.KeyPrefix = prefix; o.FailSafeMaxStale = time.Minute })
	opts := []tiered.GroupOption{tiered.WithNotFoundTTL(time.Minute)}
	ga := tiered.NewGroup[string](a, "race", time.Minute, opts...)
	gb := tiered.NewGroup[string](b, "race", time.Minute, opts...)
	writer := ga
	if r.who == "another instance" {
		writer = gb
	}
	if r.present {
		const short = 20 * time.Millisecond
		for _, k := range []string{"k", "other"} {
			require.NoError(t, gb.Set(ctx, k, "old", tiered.TTL(short)))
		}
		time.Sleep(2 * short) // past its TTL (no event to wait for): the load reads it as stale
		require.NoError(t, a.HearInvalidationsForTest(ctx))
	}
	entered, release := make(chan struct{}), make(chan struct{})
	loaded := func(k string) (string, error) {
		if r.missing && k == "k" {
			return "", tiered.ErrNotFound
		}
		return "loaded", nil
	}
	done := make(chan error, 1)
	go func() {
		if r.batch {
			_, err := ga.GetOrLoadMany(ctx, []string{"k", "other"}, func(_ context.Context, keys []string) (map[string]string, error) {
				close(entered)
				<-release
				out := map[string]string{}
				for _, k := range keys {
					if v, err := loaded(k); err == nil {
						out[k] = v
					}
				}
				return out, nil
			})
			done <- err
			return
		}
		_, err := ga.GetOrLoad(ctx, "k", func(context.Context) (string, error) {
			close(entered)
			<-release
			return loaded("k")
		})
		if errors.Is(err, tiered.ErrNotFound) {
			err = nil
		}
		done <- err
	}()
	<-entered
	if r.op == "Set" {
		require.NoError(t, writer.Set(ctx, "k", "theirs"))
	} else {
		require.NoError(t, writer.Delete(ctx, "k"))
	}
	require.NoError(t, a.HearInvalidationsForTest(ctx)) // the loading instance has heard of the write
	close(release)
	require.NoError(t, <-done)
	require.Equal(t, uint64(1), a.Stats().LoadsYielded, "one load yielded")
	require.Equal(t, uint64(1), a.GroupStats()["race"].LoadsYielded, "one load of the group yielded")

	// What Redis holds, read by an instance that held nothing before.
	fresh := tiered.NewGroup[string](newCache(t, s, func(o *tiered.Options) { o.KeyPrefix = prefix; o.FailSafeMaxStale = time.Minute }), "race", time.Minute, opts...)
	v, err := fresh.Get(ctx, "k")
	if r.op == "Set" {
		require.NoError(t, err, "the load's store went over the Set")
		require.Equal(t, "theirs", v, "the load's store went over the Set")
	} else {
		require.ErrorIs(t, err, tiered.ErrNotFound)
		reloaded, err := fresh.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "fresh", nil })
		require.NoError(t, err)
		require.Equal(t, "fresh", reloaded, "the load's store went over the Delete")
	}
	require.NoError(t, a.HearInvalidationsForTest(ctx))
	require.NoError(t, b.HearInvalidationsForTest(ctx))
	want := "theirs"
	if r.op == "Delete" {
		want = "fresh"
	}
	for name, g := range map[string]*tiered.Group[string]{"loader": ga, "other": gb} {
		v, err := g.Get(ctx, "k")
		require.NoError(t, err, "%s", name)
		require.Equal(t, want, v, "%s", name)
	}
}

// TestLoadYieldsToAWriteMadeMeanwhile: a GetOrLoad, a GetOrLoadMany and a cached miss
// (WithNotFoundTTL) whose loader runs while the key is written or deleted leave that write
// standing in Redis: on the loading instance, or on another, whether Redis held nothing for
// the key when the load read it or a value past its TTL. Not run, as the README's
// consistency model says: another instance's Delete of a key Redis did not hold (Redis
// reports no change), and another instance's write to a cache with DisableL1 (it hears of
// none) beyond what SET NX refuses.
func TestLoadYieldsToAWriteMadeMeanwhile(t *testing.T) {
	s := redistest.Start(t)
	const this, another = "this instance", "another instance"
	cases := []loadRace{
		{op: "Set", who: this}, {op: "Set", who: another},
		{op: "Set", who: this, present: true}, {op: "Set", who: another, present: true},
		{op: "Delete", who: this}, {op: "Delete", who: this, present: true}, {op: "Delete", who: another, present: true},
		{op: "Set", who: this, noL1: true}, {op: "Set", who: another, noL1: true},
		{op: "Set", who: this, present: true, noL1: true},
		{op: "Delete", who: this, noL1: true}, {op: "Delete", who: this, present: true, noL1: true},
	}
	n := 0
	for _, shape := range []struct {
		name           string
		batch, missing bool
	}{{"GetOrLoad", false, false}, {"GetOrLoadMany", true, false}, {"cached miss", false, true}, {"cached miss in a batch", true, true}} {
		t.Run(shape.name, func(t *testing.T) {
			for _, r := range cases {
				r.batch, r.missing = shape.batch, shape.missing
				n++
				prefix := fmt.Sprintf("lr%d:", n)
				t.Run(r.name(), func(t *testing.T) { r.run(t, s, prefix) })
			}
		})
	}
}

// A load over a value too large to read, whose fingerprint Redis cannot give (here the user
// may not run STRLEN, which the fingerprint script calls), stores nothing: it does not know whether the key was written since its
// read. It still returns the loader's value, and the value Redis held stays. (A plain SET,
// as before, would have gone over any write made meanwhile.)
func TestLoadOverAnUnfingerprintedValueStoresNothing(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	var rules []string
	for _, r := range readmeACL(t) {
		if r != "+strlen" {
			rules = append(rules, r)
		}
	}
	const pw = "pw-unfingerprinted"
	s.SetUser("noscripts", pw, rules...)
	big := tiered.NewGroup[string](newCache(t, s, func(o *tiered.Options) { o.KeyPrefix = "synspirit:" }), "docs", time.Minute)
	require.NoError(t, big.Set(ctx, "k", strings.Repeat("x", 4096)))
	held := redisGet(t, s, redisKey(t, big, "k"))
	c := newCache(t, s, func(o *tiered.Options) { o.KeyPrefix = "synspirit:"; o.RedisURL = s.UserURL("noscripts", pw) })
	for _, batch := range []bool{false, true} {
		small := tiered.NewGroup[string](c, "docs", time.Minute, tiered.WithMaxValueBytes(64))
		var v string
		var err error
		if batch {
			var m map[string]string
			m, err = small.GetOrLoadMany(ctx, []string{"k"}, func(context.Context, []string) (map[string]string, error) {
				return map[string]string{"k": "loaded"}, nil
			})
			v = m["k"]
		} else {
			v, err = small.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "loaded", nil })
		}
		require.NoError(t, err)
		require.Equal(t, "loaded", v, "batch=%v: the loader's value is returned", batch)
		require.Equal(t, held, redisGet(t, s, redisKey(t, big, "k")), "batch=%v: stored over a value it could not fingerprint", batch)
		require.Zero(t, c.Stats().LoadsYielded)
		require.Positive(t, c.Stats().TooLarge, "the load read the value")
	}
}

// redisGet is what Redis holds under rk, read by a client of its own.
func redisGet(t *testing.T, s *redistest.Server, rk string) string {
	t.Helper()
	return rawGet(t, rawClient(t, s.Addr()), rk)
}
