package tiered_test

// A review from outside of 78974bd: a load over a value it replaces stores with a
// compare-and-set of a fingerprint (length, SHA-1 of the first and last 4 KiB; Redis
// fingerprints a value over MaxValueBytes: digestOf), through the data client; batches
// split their stores into a listener round and a data-client round (storeMany). The tests
// of the earlier reviews (review_loadrace_test.go, review_storecond_test.go) are not
// repeated. Tests named ...Hole... failed on 78974bd and name what went wrong (a key gone
// between the read and the digest made the store a plain SET; it is a SET NX now, and a
// digest that fails stores nothing); the others held and stay as regression tests.
//
// Hooks: Options.Observer's RedisCallDone runs on the caller's goroutine right after each
// Redis call, so a test can act between two calls of one load: after its read ("BATCH":
// GETRANGE and PTTL), after its digest ("EVALSHA"), after its compare-and-set ("EVAL",
// "BATCH EVAL"), before the value goes to L1.

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// fpHook is an Observer whose RedisCallDone runs the armed function (if any) with the
// command's name. The function disarms itself when it should run once: it may call the
// cache, whose calls come back here.
type fpHook struct {
	f atomic.Pointer[func(cmd string)]
}

func (h *fpHook) LoadDone(string, time.Duration, error) {}
func (h *fpHook) RedisCallDone(cmd string, _ time.Duration, _ error) {
	if f := h.f.Load(); f != nil {
		(*f)(cmd)
	}
}

// once arms fn for the first call named one of cmds; it reports through the returned
// channel that it ran.
func (h *fpHook) once(fn func(), cmds ...string) <-chan struct{} {
	ran := make(chan struct{})
	f := func(cmd string) {
		for _, c := range cmds {
			if c == cmd {
				if h.f.Swap(nil) != nil { // disarmed before fn: fn may call the cache
					fn()
					close(ran)
				}
				return
			}
		}
	}
	h.f.Store(&f)
	return ran
}

func fpHooked(h *fpHook) func(*tiered.Options) {
	return func(o *tiered.Options) { o.Observer = h }
}

// rawSet writes bytes under rk (binary-safe), for a minute.
func rawSet(t *testing.T, raw rueidis.Client, rk string, v []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, raw.Do(ctx, raw.B().Set().Key(rk).Value(rueidis.BinaryString(v)).PxMilliseconds(60000).Build()).Error())
}

func rawDel(t *testing.T, raw rueidis.Client, rk string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, raw.Do(ctx, raw.B().Del().Key(rk).Build()).Error())
}

// fpLoad is one GetOrLoad of each key (concurrently), or one GetOrLoadMany of keys, whose
// loader calls during (if not nil) once and returns v for every key.
func fpLoad(t *testing.T, g *tiered.Group[string], batch bool, keys []string, v string, during func()) {
	t.Helper()
	ctx := context.Background()
	if batch {
		got, err := g.GetOrLoadMany(ctx, keys, loadAllAsAfter(during, v))
		require.NoError(t, err)
		for _, k := range keys {
			require.Equal(t, v, got[k], "key %s", k)
		}
		return
	}
	var once sync.Once
	var wg sync.WaitGroup
	errs := make(chan error, len(keys))
	for _, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := g.GetOrLoad(ctx, k, func(context.Context) (string, error) {
				if during != nil {
					once.Do(during)
				}
				return v, nil
			})
			if err == nil && got != v {
				err = fmt.Errorf("key %s: got %q", k, got)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// fpServes checks, after c heard every invalidation sent, that g serves what Redis holds for
// key: a fresh value of the test (JSON "fresh-...") is served as such, from L1 or Redis, and
// anything else (nothing, a foreign value, a value past its TTL) is a miss. Three reads: the
// later ones may come from L1.
func fpServes(t *testing.T, raw rueidis.Client, c *tiered.Cache, g *tiered.Group[string], key, who string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, c.HearInvalidationsForTest(ctx))
	env := rawGet(t, raw, redisKey(t, g, key))
	for i := range 3 {
		v, err := g.Get(ctx, key)
		if !strings.Contains(env, `"fresh-`) {
			require.Error(t, err, "%s: key %q: Redis holds %.40q, read %d serves %q (from L1: a value Redis no longer holds)", who, key, env, i, v)
			continue
		}
		require.NoError(t, err, "%s: key %q: Redis holds %.60q", who, key, env)
		require.Contains(t, env, strconv.Quote(v), "%s: key %q: read %d serves %q, Redis holds %.60q", who, key, i, v, env)
		c.WaitL1ForTest()
	}
}

var fpShapes = []struct {
	name  string
	batch bool
}{{"GetOrLoad", false}, {"GetOrLoadMany", true}}

// --- (1) The Go fingerprint against the Lua one ----------------------------------------

// fpContents are byte patterns of values a load replaces (all undecodable): NULs, high
// bytes, invalid UTF-8, random bytes, and an envelope header of another codec.
var fpContents = []struct {
	name string
	make func(n int) []byte
}{
	{"zeros", func(n int) []byte { return make([]byte, n) }},
	{"0xff", func(n int) []byte { return []byte(strings.Repeat("\xff", n)) }},
	{"invalid UTF-8", func(n int) []byte { return []byte(strings.Repeat("\xc3\x28\xe2\x82\xa0\x80", n/6+1))[:n] }},
	{"random", func(n int) []byte {
		r := mrand.New(mrand.NewPCG(uint64(n), 7))
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}},
	{"header of another codec", func(n int) []byte {
		b := tiered.EnvelopeForTest(make([]byte, max(n, 12)), time.Now().Add(time.Hour).UnixMilli())
		b[3] = 0x7f
		return b[:n]
	}},
}

// Lengths around the edges (4096, 8192), their digits (9/10, 99/100, 9999/10000), the
// group's read limit (envelope header 12 + MaxValueBytes 20000 = 20012: read whole; 20013
// and over: fingerprinted by Redis), and none (an empty string).
var fpLengths = []int{0, 1, 2, 9, 10, 99, 100, 4095, 4096, 4097, 4100, 6000, 8191, 8192, 8193, 8196, 9999, 10000, 12288, 12289, 20011, 20012, 20013, 65536}

// A load over a value it replaces, and no write meanwhile: the compare-and-set must store.
// It stores only if the fingerprint the Go side made of the bytes read equals the one the
// script makes of what Redis holds: any difference (a length's digits, the overlap of the
// two edges of a value under 8 KiB, binary bytes) shows as a store refused and counted as a
// yield to a write no one made. Lengths of 1e14 and more, where Lua 5.1 would print the
// length as "1e+14" and Go as digits, cannot be written (proto-max-bulk-len, 512 MB).
func TestReviewFingerprintGoMatchesLua(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	raw := rawClient(t, s.Addr())
	a := newCache(t, s, func(o *tiered.Options) { o.KeyPrefix = "fp:" })
	g := tiered.NewGroup[string](a, "g", time.Minute, tiered.WithMaxValueBytes(20000))
	armed(t, a, g)
	for ci, content := range fpContents {
		for _, shape := range fpShapes {
			t.Run(content.name+" "+shape.name, func(t *testing.T) {
				var keys []string
				for _, n := range fpLengths {
					k := fmt.Sprintf("c%d-%v-len%d", ci, shape.batch, n)
					keys = append(keys, k)
					rawSet(t, raw, redisKey(t, g, k), content.make(n))
				}
				require.NoError(t, a.HearInvalidationsForTest(ctx))
				before := a.Stats().LoadsYielded
				fpLoad(t, g, shape.batch, keys, "fresh-loaded", nil)
				var refused []string
				for i, k := range keys {
					if !strings.Contains(rawGet(t, raw, redisKey(t, g, k)), `"fresh-loaded"`) {
						refused = append(refused, strconv.Itoa(fpLengths[i]))
					}
				}
				require.Empty(t, refused, "HOLE: the compare-and-set refused the store over a %s value of these lengths, though nothing wrote the key: the Go fingerprint differs from the Lua one", content.name)
				require.Equal(t, before, a.Stats().LoadsYielded)
			})
		}
	}
}

// The README's caveat, as documented: a write of a value of the same length and the same
// first and last 4 KiB, with another middle, passes for the value read, and the load goes
// over it (a foreign value here, whose edges stay; a tiercache envelope's edges hold its
// expiry to the millisecond). One byte more in the middle is a write the load yields to.
func TestReviewFingerprintSameEdgesPassForTheValueRead(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	raw := rawClient(t, s.Addr())
	a := newCache(t, s, func(o *tiered.Options) { o.KeyPrefix = "edges:" })
	g := tiered.NewGroup[string](a, "g", time.Minute, tiered.WithMaxValueBytes(1<<20))
	edge := strings.Repeat("e", 4096)
	for _, tc := range []struct {
		name   string
		middle string
		stands bool
	}{{"same length, same edges", "yyyyyyyy", false}, {"one byte longer", "yyyyyyyyy", true}} {
		for _, shape := range fpShapes {
			t.Run(tc.name+" "+shape.name, func(t *testing.T) {
				rk := redisKey(t, g, "k")
				rawSet(t, raw, rk, []byte(edge+"xxxxxxxx"+edge))
				require.NoError(t, a.HearInvalidationsForTest(ctx))
				fpLoad(t, g, shape.batch, []string{"k"}, "fresh-loaded", func() { rawSet(t, raw, rk, []byte(edge+tc.middle+edge)) })
				in := rawGet(t, raw, rk)
				if tc.stands {
					require.Equal(t, edge+tc.middle+edge, in)
				} else {
					require.Contains(t, in, `"fresh-loaded"`, "documented: taken for the value read")
				}
			})
		}
	}
}

// --- (4) A value over MaxValueBytes: the digest is asked after the read ---------------

// A load reads a value over its group's MaxValueBytes (not moved: one byte past the limit
// says so), then asks Redis for its fingerprint (digestOf), then runs its loader. If the key
// is gone by the digest (a Delete, its expiry, eviction), digestOf makes the condition
// condNone: "nothing known (the read failed): a plain SET". But the digest knew: Redis held
// nothing then. Another instance's Set made while the loader runs is then gone over by the
// load's plain SET (through the listener: this instance keeps the loaded value in L1 too),
// where a SET NX (what a read that found nothing stores with) would have let it stand.
func TestReviewFingerprintHoleOversizeGoneBeforeDigest(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	raw := rawClient(t, s.Addr())
	for _, shape := range fpShapes {
		t.Run(shape.name, func(t *testing.T) {
			hook := &fpHook{}
			prefix := fmt.Sprintf("gone-%v:", shape.batch)
			a := newCache(t, s, func(o *tiered.Options) { o.KeyPrefix = prefix }, fpHooked(hook))
			b := newCache(t, s, func(o *tiered.Options) { o.KeyPrefix = prefix })
			ga := tiered.NewGroup[string](a, "g", time.Minute, tiered.WithMaxValueBytes(64))
			gb := tiered.NewGroup[string](b, "g", time.Minute)
			armed(t, a, ga)
			rk := redisKey(t, ga, "k")
			rawSet(t, raw, rk, []byte(strings.Repeat("big", 100)))
			require.NoError(t, a.HearInvalidationsForTest(ctx))
			tooLarge := a.Stats().TooLarge
			ran := hook.once(func() { rawDel(t, raw, rk) }, "BATCH") // after the read, before the digest
			fpLoad(t, ga, shape.batch, []string{"k"}, "fresh-loaded", func() {
				require.NoError(t, gb.Set(ctx, "k", "fresh-theirs"))
			})
			<-ran
			require.Equal(t, tooLarge+1, a.Stats().TooLarge, "the load's read saw the value over the limit")
			in := rawGet(t, raw, rk)
			require.Contains(t, in, `"fresh-theirs"`, "HOLE: another instance's Set made while the loader ran was gone over (Redis holds %.30q; LoadsYielded %d): the load had read a value over MaxValueBytes, the key was gone by the digest, and digestOf turned that into condNone, a plain SET, instead of condAbsent (SET NX)", in, a.Stats().LoadsYielded)
			require.Equal(t, uint64(1), a.Stats().LoadsYielded)
			fpServes(t, raw, a, ga, "k", "loader")
			fpServes(t, raw, b, gb, "k", "writer")
		})
	}
}

// The value over the limit is replaced between the read and the digest (by a smaller one,
// or another large one): the digest is of the new value, written before the loader ran, and
// the compare-and-set compares that (documented in digestOf). A write made while the loader
// runs still stands; none, and the load stores.
func TestReviewFingerprintOversizeChangedBeforeDigest(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	raw := rawClient(t, s.Addr())
	for _, swap := range []struct {
		name string
		v    []byte
	}{{"by a small foreign value", []byte("small")}, {"by another large value", []byte(strings.Repeat("BIG", 200))}} {
		for _, during := range []string{"nothing", "another instance's Set"} {
			for _, shape := range fpShapes {
				t.Run(swap.name+" "+during+" "+shape.name, func(t *testing.T) {
					hook := &fpHook{}
					prefix := fmt.Sprintf("chg-%d-%d-%v:", len(swap.v), len(during), shape.batch)
					a := newCache(t, s, func(o *tiered.Options) { o.KeyPrefix = prefix }, fpHooked(hook))
					b := newCache(t, s, func(o *tiered.Options) { o.KeyPrefix = prefix })
					ga := tiered.NewGroup[string](a, "g", time.Minute, tiered.WithMaxValueBytes(64))
					gb := tiered.NewGroup[string](b, "g", time.Minute)
					armed(t, a, ga)
					rk := redisKey(t, ga, "k")
					rawSet(t, raw, rk, []byte(strings.Repeat("big", 100)))
					require.NoError(t, a.HearInvalidationsForTest(ctx))
					ran := hook.once(func() { rawSet(t, raw, rk, swap.v) }, "BATCH")
					var write func()
					if during != "nothing" {
						write = func() { require.NoError(t, gb.Set(ctx, "k", "fresh-theirs")) }
					}
					fpLoad(t, ga, shape.batch, []string{"k"}, "fresh-loaded", write)
					<-ran
					want := `"fresh-loaded"`
					if write != nil {
						want = `"fresh-theirs"`
					}
					require.Contains(t, rawGet(t, raw, rk), want)
					fpServes(t, raw, a, ga, "k", "loader")
					fpServes(t, raw, b, gb, "k", "writer")
				})
			}
		}
	}
}

// --- (2) Coherence after a compare-and-set through the data client --------------------

// fpStale is a tiercache value past its TTL (the fail-safe margin keeps it in Redis): a
// value a load replaces.
func fpStale() []byte {
	return tiered.EnvelopeForTest([]byte(`"old"`), time.Now().Add(-time.Second).UnixMilli())
}

// A load over a value it replaces stores with a compare-and-set through the data client,
// then fills L1 under the snapshot taken before its read; Redis's push of the script's
// write drops it. A second write lands between the compare-and-set's reply and the fill:
// on this instance (Set, Delete), on another (Set, Delete), or by anything else. Every
// instance must then serve what Redis holds: the second write, from L1 or Redis, never the
// loaded value it replaced.
func TestReviewFingerprintWriteBetweenCASAndFill(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	raw := rawClient(t, s.Addr())
	writes := []struct {
		name  string
		write func(ga, gb *tiered.Group[string], rk string)
	}{
		{"this instance's Set", func(ga, _ *tiered.Group[string], _ string) { require.NoError(t, ga.Set(ctx, "k", "fresh-second")) }},
		{"this instance's Delete", func(ga, _ *tiered.Group[string], _ string) { require.NoError(t, ga.Delete(ctx, "k")) }},
		{"another instance's Set", func(_, gb *tiered.Group[string], _ string) { require.NoError(t, gb.Set(ctx, "k", "fresh-second")) }},
		{"another instance's Delete", func(_, gb *tiered.Group[string], _ string) { require.NoError(t, gb.Delete(ctx, "k")) }},
		{"a foreign SET", func(_, _ *tiered.Group[string], rk string) { rawSet(t, raw, rk, []byte("foreign")) }},
	}
	for wi, w := range writes {
		for _, shape := range fpShapes {
			t.Run(w.name+" "+shape.name, func(t *testing.T) {
				hook := &fpHook{}
				prefix := fmt.Sprintf("between-%d-%v:", wi, shape.batch)
				fs := func(o *tiered.Options) { o.KeyPrefix, o.FailSafeMaxStale = prefix, time.Minute }
				a := newCache(t, s, fs, fpHooked(hook))
				b := newCache(t, s, fs)
				ga := tiered.NewGroup[string](a, "g", time.Minute)
				gb := tiered.NewGroup[string](b, "g", time.Minute)
				armed(t, a, ga)
				armed(t, b, gb)
				rk := redisKey(t, ga, "k")
				rawSet(t, raw, rk, fpStale())
				require.NoError(t, a.HearInvalidationsForTest(ctx))
				require.NoError(t, b.HearInvalidationsForTest(ctx))
				ran := hook.once(func() { w.write(ga, gb, rk) }, "EVAL", "BATCH EVAL")
				fpLoad(t, ga, shape.batch, []string{"k"}, "fresh-loaded", nil)
				<-ran
				require.NotContains(t, rawGet(t, raw, rk), `"fresh-loaded"`, "the second write came after the compare-and-set")
				fpServes(t, raw, a, ga, "k", "loader")
				fpServes(t, raw, b, gb, "k", "other")
			})
		}
	}
}

// Many rounds: two instances race Sets and Deletes against loads (single and batch) of keys
// whose Redis values the loads replace (past their TTL, foreign, empty, absent). After each
// round, once every invalidation is heard, each instance serves what Redis holds.
func TestReviewFingerprintRacingInstancesAgree(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	raw := rawClient(t, s.Addr())
	fs := func(o *tiered.Options) { o.KeyPrefix, o.FailSafeMaxStale = "race:", time.Minute }
	a, b := newCache(t, s, fs), newCache(t, s, fs)
	ga := tiered.NewGroup[string](a, "g", time.Minute)
	gb := tiered.NewGroup[string](b, "g", time.Minute)
	armed(t, a, ga)
	armed(t, b, gb)
	groups := []*tiered.Group[string]{ga, gb}
	rounds := 60
	if testing.Short() {
		rounds = 10
	}
	keys := []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"}
	for round := range rounds {
		r := mrand.New(mrand.NewPCG(uint64(round), 1))
		for i, k := range keys {
			rk := redisKey(t, ga, k)
			switch (i + round) % 4 {
			case 0:
				rawSet(t, raw, rk, fpStale())
			case 1:
				rawSet(t, raw, rk, []byte("foreign"))
			case 2:
				rawSet(t, raw, rk, nil)
			default:
				rawDel(t, raw, rk)
			}
		}
		require.NoError(t, a.HearInvalidationsForTest(ctx))
		require.NoError(t, b.HearInvalidationsForTest(ctx))
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		loader := func(g *tiered.Group[string], who string) func(context.Context, []string) (map[string]string, error) {
			return func(_ context.Context, missing []string) (map[string]string, error) {
				out := map[string]string{}
				for _, k := range missing {
					out[k] = "fresh-" + who
				}
				return out, nil
			}
		}
		for gi, g := range groups {
			who := fmt.Sprintf("load%d-%d", gi, round)
			wg.Add(2)
			go func() { // a batch of every key
				defer wg.Done()
				<-start
				_, err := g.GetOrLoadMany(ctx, keys, loader(g, who))
				errs <- err
			}()
			go func() { // single loads
				defer wg.Done()
				<-start
				for _, k := range keys {
					_, err := g.GetOrLoad(ctx, k, func(context.Context) (string, error) { return "fresh-" + who, nil })
					errs <- errIgnoreNotFound(err)
				}
			}()
		}
		for wi := range 2 {
			ops := r.Perm(len(keys))
			wg.Add(1)
			go func() { // writers: Sets and Deletes on both instances
				defer wg.Done()
				<-start
				for n, i := range ops {
					g := groups[(n+wi)%2]
					if (n+wi)%3 == 0 {
						errs <- g.Delete(ctx, keys[i])
					} else {
						errs <- g.Set(ctx, keys[i], fmt.Sprintf("fresh-set%d-%d", wi, round))
					}
				}
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		close(start)
		// Drain while running: errs is bounded.
		for running := true; running; {
			select {
			case err := <-errs:
				require.NoError(t, err)
			case <-done:
				running = false
			}
		}
		for len(errs) > 0 {
			require.NoError(t, <-errs)
		}
		for _, k := range keys {
			fpServes(t, raw, a, ga, k, fmt.Sprintf("round %d, instance a", round))
			fpServes(t, raw, b, gb, k, fmt.Sprintf("round %d, instance b", round))
		}
	}
	t.Logf("LoadsYielded a=%d b=%d", a.Stats().LoadsYielded, b.Stats().LoadsYielded)
}

func errIgnoreNotFound(err error) error {
	if err != nil && strings.Contains(err.Error(), "not found") {
		return nil
	}
	return err
}

// --- (3) A batch mixing absent, replaced and fresh keys, with racing writes ------------

// One GetOrLoadMany over keys of every kind (absent, past its TTL, foreign, empty string,
// over MaxValueBytes, fresh), while its loader runs this instance and another Set or Delete
// some of them. Each write stands, the other loaded keys store, fresh keys keep their value,
// LoadsYielded counts exactly the loaded keys written, and afterwards both instances serve
// what Redis holds, the loader's keys that kept the loaded value from its L1 after a read.
func TestReviewFingerprintBatchMixedKinds(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	raw := rawClient(t, s.Addr())
	fs := func(o *tiered.Options) { o.KeyPrefix, o.FailSafeMaxStale = "mixed:", time.Minute }
	a, b := newCache(t, s, fs), newCache(t, s, fs)
	ga := tiered.NewGroup[string](a, "g", time.Minute, tiered.WithMaxValueBytes(1000))
	gb := tiered.NewGroup[string](b, "g", time.Minute, tiered.WithMaxValueBytes(1000))
	armed(t, a, ga)
	armed(t, b, gb)
	kinds := []struct {
		name  string
		write func(rk string) // nil: absent
		fresh bool
	}{
		{"absent", nil, false},
		{"stale", func(rk string) { rawSet(t, raw, rk, fpStale()) }, false},
		{"foreign", func(rk string) { rawSet(t, raw, rk, []byte("foreign")) }, false},
		{"empty", func(rk string) { rawSet(t, raw, rk, nil) }, false},
		{"oversize", func(rk string) { rawSet(t, raw, rk, []byte(strings.Repeat("o", 5000))) }, false},
		{"fresh", nil, true},
	}
	ops := []string{"", "this Set", "this Delete", "other Set", "other Delete"}
	var keys []string
	kindOf, opOf := map[string]int{}, map[string]string{}
	for ki, kd := range kinds {
		for _, op := range ops {
			if kd.name == "absent" && op == "other Delete" {
				continue // another instance's Delete of a key Redis does not hold: documented
			}
			k := fmt.Sprintf("%s-%s", kd.name, strings.ReplaceAll(op, " ", ""))
			keys = append(keys, k)
			kindOf[k], opOf[k] = ki, op
			if kd.fresh {
				require.NoError(t, gb.Set(ctx, k, "fresh-was"))
			} else if kd.write != nil {
				kd.write(redisKey(t, ga, k))
			}
		}
	}
	require.NoError(t, a.HearInvalidationsForTest(ctx))
	for _, k := range keys {
		if kinds[kindOf[k]].fresh {
			warm(t, a, ga, k)
		}
	}
	writes := func() {
		for _, k := range keys {
			switch opOf[k] {
			case "this Set":
				require.NoError(t, ga.Set(ctx, k, "fresh-mine"))
			case "this Delete":
				require.NoError(t, ga.Delete(ctx, k))
			case "other Set":
				require.NoError(t, gb.Set(ctx, k, "fresh-theirs"))
			case "other Delete":
				require.NoError(t, gb.Delete(ctx, k))
			}
		}
	}
	before := a.Stats().LoadsYielded
	got, err := ga.GetOrLoadMany(ctx, keys, func(_ context.Context, missing []string) (map[string]string, error) {
		writes()
		out := map[string]string{}
		for _, k := range missing {
			out[k] = "fresh-loaded"
		}
		return out, nil
	})
	require.NoError(t, err)
	yields := 0
	for _, k := range keys {
		kd, op := kinds[kindOf[k]], opOf[k]
		in := rawGet(t, raw, redisKey(t, ga, k))
		if kd.fresh {
			require.Equal(t, "fresh-was", got[k], "key %s: fresh, served, not loaded", k)
		} else {
			require.Equal(t, "fresh-loaded", got[k], "key %s", k)
			if op != "" {
				yields++
			}
		}
		switch {
		case strings.HasSuffix(op, "Set"):
			want := map[string]string{"this Set": `"fresh-mine"`, "other Set": `"fresh-theirs"`}[op]
			require.Contains(t, in, want, "key %s: the load went over the %s", k, op)
		case strings.HasSuffix(op, "Delete"):
			require.Empty(t, in, "key %s: the load went over the %s", k, op)
		case kd.fresh:
			require.Contains(t, in, `"fresh-was"`, "key %s", k)
		default:
			require.Contains(t, in, `"fresh-loaded"`, "key %s: nothing wrote it, the load stores", k)
		}
	}
	require.Equal(t, uint64(yields), a.Stats().LoadsYielded-before, "LoadsYielded counts the loaded keys written while the loader ran")
	for _, k := range keys {
		fpServes(t, raw, a, ga, k, "loader")
		fpServes(t, raw, b, gb, k, "other")
	}
	for _, k := range keys {
		if opOf[k] == "" || strings.HasSuffix(opOf[k], "Set") {
			require.Eventually(t, func() bool {
				_, err := ga.Get(ctx, k)
				a.WaitL1ForTest()
				return err == nil && l1Hit(a, func() { _, _ = ga.Get(ctx, k) })
			}, waitFor, tick, "key %s never came back to the loader's L1", k)
		}
	}
}

// --- (5) A paused Redis under a batch's two rounds --------------------------------------

// CLIENT PAUSE WRITE past the Timeout while a batch over absent keys (SET NX through the
// listener: held out of L1 while unsettled) and keys it replaces (compare-and-set through the
// data client: not held) stores. While paused and after, each instance serves what Redis
// holds (a compare-and-set that runs late is pushed to this instance's listener: nothing
// here heard it, nothing is filled from it); when Redis is back, the keys come back to L1.
func TestReviewFingerprintPausedBatchRounds(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	raw := rawClient(t, s.Addr())
	fs := func(o *tiered.Options) { o.KeyPrefix, o.FailSafeMaxStale = "paused:", time.Minute }
	a, b := newCache(t, s, fs), newCache(t, s, fs)
	ga := tiered.NewGroup[string](a, "g", time.Minute)
	gb := tiered.NewGroup[string](b, "g", time.Minute)
	armed(t, a, ga)
	armed(t, b, gb)
	keys := []string{"absent1", "absent2", "stale1", "stale2", "foreign1"}
	rawSet(t, raw, redisKey(t, ga, "stale1"), fpStale())
	rawSet(t, raw, redisKey(t, ga, "stale2"), fpStale())
	rawSet(t, raw, redisKey(t, ga, "foreign1"), []byte("foreign"))
	require.NoError(t, a.HearInvalidationsForTest(ctx))
	_, err := ga.GetOrLoadMany(ctx, keys, func(_ context.Context, missing []string) (map[string]string, error) {
		s.Do("CLIENT", "PAUSE", "600", "WRITE")
		out := map[string]string{}
		for _, k := range missing {
			out[k] = "fresh-loaded"
		}
		return out, nil
	})
	require.NoError(t, err, "the loaded values are returned")
	for _, k := range keys { // while paused (a read is not held)
		v, err := ga.Get(ctx, k)
		in := rawGet(t, raw, redisKey(t, ga, k))
		if err == nil {
			require.Contains(t, in, strconv.Quote(v), "key %s: served %q while paused, Redis holds %.40q", k, v, in)
		}
	}
	// A write is held until the pause ends.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, raw.Do(wctx, raw.B().Set().Key("paused:unrelated").Value("1").Build()).Error())
	for _, k := range keys {
		fpServes(t, raw, a, ga, k, "loader")
		fpServes(t, raw, b, gb, k, "other")
	}
	for _, k := range keys {
		require.Eventually(t, func() bool {
			v, err := ga.GetOrLoad(ctx, k, func(context.Context) (string, error) { return "fresh-loaded", nil })
			a.WaitL1ForTest()
			return err == nil && v == "fresh-loaded" && strings.Contains(rawGet(t, raw, redisKey(t, ga, k)), `"fresh-loaded"`) &&
				l1Hit(a, func() { _, _ = ga.Get(ctx, k) })
		}, 5*time.Second, tick, "key %s never came back to L1, or L1 and Redis disagree", k)
		fpServes(t, raw, b, gb, k, "other")
	}
}

// --- (6) A cluster: the batch's two rounds split by node --------------------------------

// A batch over keys on every master, absent or replaced (past their TTL, foreign, empty),
// some Set by another instance while the loader runs: the SET NX round goes through the
// listener, the compare-and-set round through the data client, both split by node. Each
// write stands, the others store, LoadsYielded counts the written keys, and the loader's
// L1 serves the loaded values after one read.
func TestReviewFingerprintClusterBatchSplit(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster: skipped with -short")
	}
	ctx := context.Background()
	cl := redistest.StartCluster(t)
	raw := rawClient(t, cl.Addrs()...)
	mk := func() *tiered.Cache {
		return newCacheAt(t, cl.URL(), func(o *tiered.Options) { o.KeyPrefix, o.FailSafeMaxStale = "split:", time.Minute })
	}
	a, b := mk(), mk()
	ga := tiered.NewGroup[string](a, "g", time.Minute)
	gb := tiered.NewGroup[string](b, "g", time.Minute)
	armed(t, a, ga)
	armed(t, b, gb)
	base := keysOnEachMaster(t, cl, ga)
	var keys, theirs []string
	for vi, variant := range []string{"absent", "stale", "foreign", "empty"} {
		for _, k := range base {
			for _, written := range []bool{false, true} {
				key := fmt.Sprintf("%s-%d-%s-%v", k, vi, variant, written) // on any master: checked below
				keys = append(keys, key)
				if written {
					theirs = append(theirs, key)
				}
				rk := redisKey(t, ga, key)
				switch variant {
				case "stale":
					rawSet(t, raw, rk, fpStale())
				case "foreign":
					rawSet(t, raw, rk, []byte("foreign"))
				case "empty":
					rawSet(t, raw, rk, nil)
				}
			}
		}
	}
	masters := map[*redistest.Server]bool{}
	for _, k := range keys {
		masters[cl.MasterOfKey(redisKey(t, ga, k))] = true
	}
	require.Len(t, masters, len(cl.Masters), "the batch spans every master")
	require.NoError(t, a.HearInvalidationsForTest(ctx))
	fpLoad(t, ga, true, keys, "fresh-loaded", func() {
		for _, k := range theirs {
			require.NoError(t, gb.Set(ctx, k, "fresh-theirs"))
		}
	})
	isTheirs := map[string]bool{}
	for _, k := range theirs {
		isTheirs[k] = true
	}
	for _, k := range keys {
		in := rawGet(t, raw, redisKey(t, ga, k))
		if isTheirs[k] {
			require.Contains(t, in, `"fresh-theirs"`, "key %s: the load went over the Set", k)
		} else {
			require.Contains(t, in, `"fresh-loaded"`, "key %s (master %s): not stored", k, cl.MasterOfKey(redisKey(t, ga, k)).Addr())
		}
	}
	require.Equal(t, uint64(len(theirs)), a.Stats().LoadsYielded)
	for _, k := range keys {
		fpServes(t, raw, a, ga, k, "loader")
		fpServes(t, raw, b, gb, k, "other")
		require.Eventually(t, func() bool {
			_, err := ga.Get(ctx, k)
			a.WaitL1ForTest()
			return err == nil && l1Hit(a, func() { _, _ = ga.Get(ctx, k) })
		}, waitFor, tick, "key %s never came back to the loader's L1", k)
	}
}
