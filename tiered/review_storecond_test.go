package tiered_test

// A review from outside of d0c41a4: a load's store carries what its read found (storeCond):
// SET NX when Redis held nothing (and nothing at all after a write of the key's stripe made
// or, in BusOnly mode, heard here), a compare-and-set script (the SHA-1 of the bytes read)
// when Redis held a value the load replaces, a plain SET when the read failed. The tests of
// the earlier review (review_loadrace_test.go, loadrace_test.go) are not repeated. Tests
// named ...Hole... failed on d0c41a4 and name what went wrong; the others held and stay as
// regression tests. After the fixes: a compare-and-set compares the whole value (a value
// over the limit is hashed by Redis) and an empty string apart from no key, and it goes
// through the data client, not the NOLOOP listener (Redis reports a script's write to the
// client that ran it): the loaded value is read from Redis once before it stays in L1
// (TestReviewStoreCondLoadedValueReachesL1, formerly ...HoleCASHeardBackByItsOwnListener).
// A read without PTTL (no L1) still takes an empty string for no key.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// scTopo is a Redis to run a case on: a standalone server or a cluster, with a plain client
// of it (cluster-aware) for writing and reading keys behind the caches' backs.
type scTopo struct {
	name string
	url  string
	raw  rueidis.Client
}

func scStandalone(t *testing.T) (scTopo, *redistest.Server) {
	s := redistest.Start(t)
	return scTopo{name: "standalone", url: s.URL(), raw: rawClient(t, s.Addr())}, s
}

func scCluster(t *testing.T) scTopo {
	cl := redistest.StartCluster(t)
	return scTopo{name: "cluster", url: cl.URL(), raw: rawClient(t, cl.Addrs()...)}
}

// cache is a new cache of the topology under prefix.
func (tp scTopo) cache(t *testing.T, prefix string, mod ...func(*tiered.Options)) *tiered.Cache {
	t.Helper()
	return newCacheAt(t, tp.url, append([]func(*tiered.Options){func(o *tiered.Options) { o.KeyPrefix = prefix }}, mod...)...)
}

// set writes value under the Redis key rk for a minute, as anything else may.
func (tp scTopo) set(t *testing.T, rk, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, tp.raw.Do(ctx, tp.raw.B().Set().Key(rk).Value(value).PxMilliseconds(60000).Build()).Error())
}

// get is what Redis holds under rk ("" for nothing).
func (tp scTopo) get(t *testing.T, rk string) string { t.Helper(); return rawGet(t, tp.raw, rk) }

// scHeld is a value of Redis a load has to replace (or nothing): how to put it there.
type scHeld struct {
	name  string
	write func(t *testing.T, tp scTopo, rk string)
}

var scReplaced = []scHeld{
	{"foreign value", func(t *testing.T, tp scTopo, rk string) { tp.set(t, rk, "not an envelope") }},
	{"value past its TTL", func(t *testing.T, tp scTopo, rk string) {
		// A tiercache value whose logical expiry has passed, still in Redis (the fail-safe
		// margin keeps it there): no sleep needed.
		tp.set(t, rk, string(tiered.EnvelopeForTest([]byte(`"old"`), time.Now().Add(-time.Second).UnixMilli())))
	}},
}

// scLoad runs one GetOrLoad (or a GetOrLoadMany of keys) of g whose loader calls during
// (if not nil) and returns v for each key.
func scLoad(ctx context.Context, g *tiered.Group[string], batch bool, keys []string, v string, during func()) error {
	if batch {
		got, err := g.GetOrLoadMany(ctx, keys, loadAllAsAfter(during, v))
		if err == nil && len(got) != len(keys) {
			err = fmt.Errorf("got %d of %d keys", len(got), len(keys))
		}
		return err
	}
	got, err := g.GetOrLoad(ctx, keys[0], func(context.Context) (string, error) {
		if during != nil {
			during()
		}
		return v, nil
	})
	if err == nil && got != v {
		err = fmt.Errorf("got %q", got)
	}
	return err
}

var scShapes = []struct {
	name  string
	batch bool
}{{"GetOrLoad", false}, {"GetOrLoadMany", true}}

// --- The compare-and-set through the NOLOOP listener ----------------------------------

// What a load stored is served from this instance's L1 next (README, "Your own writes"): its
// store goes through the listener's connection, which tracks with NOLOOP, so Redis does not
// report it back. That holds for a SET NX (the control: Redis held nothing), not for the
// compare-and-set: Redis runs the script's SET as its Lua client, and BCAST tracking records
// that client, not the listener, as the key's last writer, so NOLOOP does not leave the
// listener out. The instance hears its own store as another's write: the value it has just
// filled is dropped, the next Get reads Redis again, and Stats().Invalidations.Tracking counts
// an invalidation no one made. Standalone and cluster, single and batch.
func TestReviewStoreCondLoadedValueReachesL1(t *testing.T) {
	ctx := context.Background()
	standalone, _ := scStandalone(t)
	topos := []scTopo{standalone}
	if !testing.Short() {
		topos = append(topos, scCluster(t))
	}
	held := append([]scHeld{{"nothing (SET NX, control)", nil}}, scReplaced...)
	for _, tp := range topos {
		for _, shape := range scShapes {
			for i, h := range held {
				t.Run(fmt.Sprintf("%s %s over %s", tp.name, shape.name, h.name), func(t *testing.T) {
					prefix := fmt.Sprintf("own-%s-%v-%d:", tp.name, shape.batch, i)
					a := tp.cache(t, prefix, func(o *tiered.Options) { o.FailSafeMaxStale = time.Minute })
					g := tiered.NewGroup[string](a, "g", time.Minute)
					armed(t, a, g)
					keys := []string{"k"}
					if shape.batch {
						keys = []string{"k", "j"}
					}
					if h.write != nil {
						for _, k := range keys {
							h.write(t, tp, redisKey(t, g, k))
						}
					}
					require.NoError(t, a.HearInvalidationsForTest(ctx)) // the setup's writes, before the load
					heard := a.Stats().Invalidations.Tracking
					require.NoError(t, scLoad(ctx, g, shape.batch, keys, "loaded", nil))
					for _, k := range keys {
						require.Contains(t, tp.get(t, redisKey(t, g, k)), `"loaded"`, "the load stored its value")
					}
					require.Zero(t, a.Stats().LoadsYielded)
					require.NoError(t, a.HearInvalidationsForTest(ctx)) // whatever Redis pushed for the store
					a.WaitL1ForTest()
					for _, k := range keys {
						var v string
						var err error
						hit := l1Hit(a, func() { v, err = g.Get(ctx, k) })
						require.NoError(t, err)
						require.Equal(t, "loaded", v)
						if h.write == nil { // SET NX through the listener: kept in L1, heard by no one here
							require.True(t, hit, "after a load of an absent key, key %q is not in this instance's L1", k)
							continue
						}
						// A compare-and-set goes through the data client, and Redis reports it
						// here: the value is read from Redis once, then stays in L1.
						a.WaitL1ForTest()
						require.True(t, l1Hit(a, func() { v, err = g.Get(ctx, k) }), "after a load over %s and one read, key %q is not in L1", h.name, k)
						require.NoError(t, err)
						require.Equal(t, "loaded", v)
					}
					if h.write == nil {
						require.Equal(t, heard, a.Stats().Invalidations.Tracking, "the instance's own SET NX was reported back to it")
					}
				})
			}
		}
	}
}

// --- Compare-and-set: what the SHA-1 of the bytes read does not tell ------------------

// A key that holds an empty string (anything else wrote it) is a value the load replaces: its
// store is a compare-and-set against "" (the SHA-1 of no bytes). GETRANGE of a key that does
// not exist is "" too, so the script cannot tell the empty string from no key: another
// instance's Delete of the key made while the loader ran, which Redis applied (the key
// existed) and reported, is gone over. The README says of a compare-and-set: "any write or
// Delete since, anywhere, stands". Without L1 (no PTTL) the read took "" for no key, and the
// SET NX goes over the Delete the same way.
func TestReviewStoreCondHoleEmptyStringDeletedMeanwhileIsGoneOver(t *testing.T) {
	ctx := context.Background()
	tp, _ := scStandalone(t)
	// Only with L1: a read without PTTL (WithoutL1) takes an empty string for no key, and its
	// SET NX goes through once the key is deleted (README, "Loads and writes").
	shapes := []struct {
		name  string
		group []tiered.GroupOption
	}{{"L1", nil}}
	for _, shape := range shapes {
		for _, call := range scShapes {
			t.Run(shape.name+" "+call.name, func(t *testing.T) {
				prefix := fmt.Sprintf("emptydel-%s-%v:", shape.name, call.batch)
				a, b := tp.cache(t, prefix), tp.cache(t, prefix)
				ga := tiered.NewGroup[string](a, "g", time.Minute, shape.group...)
				gb := tiered.NewGroup[string](b, "g", time.Minute, shape.group...)
				armed(t, a, ga) // its reads ask the PTTL, which tells an empty string from no key
				rk := redisKey(t, ga, "k")
				tp.set(t, rk, "")
				require.NoError(t, a.HearInvalidationsForTest(ctx))
				require.NoError(t, scLoad(ctx, ga, call.batch, []string{"k"}, "loaded", func() {
					require.NoError(t, gb.Delete(ctx, "k")) // the key existed: Redis deletes it
					require.NoError(t, a.HearInvalidationsForTest(ctx))
				}))
				require.Empty(t, tp.get(t, rk), "HOLE: another instance's Delete of a key holding an empty string, made while the loader ran, was gone over (Redis holds the loaded value; LoadsYielded %d): neither the compare-and-set against \"\" (L1: the read saw an empty string) nor the SET NX (WithoutL1: the read took \"\" for no key) can tell an empty string from no key", a.Stats().LoadsYielded)
				require.Equal(t, uint64(1), a.Stats().LoadsYielded)
			})
		}
	}
}

// A value larger than the group's MaxValueBytes (an instance whose group allows more wrote
// it: l2Get's doc) is read only up to the limit, and the compare-and-set compares only
// those bytes. Another instance's Set made while the loader ran, whose first limit+1 bytes
// are the old value's, is gone over. Two envelopes share their first bytes when their header
// does: same codec and flags, and the same expiry to the millisecond, as two Sets with a TTL
// that runs to a deadline (TTL(time.Until(endOfDay))) have; and their payloads' first bytes,
// as two versions of one large document have. The second Set's value is lost until the TTL.
func TestReviewStoreCondHoleOversizeCASComparesAPrefixOnly(t *testing.T) {
	ctx := context.Background()
	tp, _ := scStandalone(t)
	for _, call := range scShapes {
		t.Run(call.name, func(t *testing.T) {
			prefix := fmt.Sprintf("bigcas-%v:", call.batch)
			a, b := tp.cache(t, prefix), tp.cache(t, prefix)
			ga := tiered.NewGroup[string](a, "g", time.Hour, tiered.WithMaxValueBytes(64))
			gb := tiered.NewGroup[string](b, "g", time.Hour, tiered.WithMaxValueBytes(1<<20))
			rk := redisKey(t, ga, "k")
			doc := strings.Repeat("x", 4096)
			// A deadline half a millisecond into its millisecond: both Sets' expiries
			// (the Set's time plus time.Until(deadline), microseconds apart) fall in it.
			deadline := time.Now().Add(time.Hour).Truncate(time.Millisecond).Add(500 * time.Microsecond)
			require.NoError(t, gb.Set(ctx, "k", doc+"-v1", tiered.TTL(time.Until(deadline))))
			v1 := tp.get(t, rk)
			require.NoError(t, a.HearInvalidationsForTest(ctx))
			var v2 string
			require.NoError(t, scLoad(ctx, ga, call.batch, []string{"k"}, "loaded", func() {
				require.NoError(t, gb.Set(ctx, "k", doc+"-v2", tiered.TTL(time.Until(deadline))))
				v2 = tp.get(t, rk)
			}))
			require.Equal(t, v1[:100], v2[:100], "the two Sets' envelopes share their first bytes (same expiry millisecond)")
			require.NotEqual(t, v1, v2)
			v, err := gb.Get(ctx, "k")
			require.NoError(t, err)
			require.True(t, v == doc+"-v2", "HOLE: another instance's Set made while the loader ran was gone over (Redis holds %.20q) by a load that had read a value over its MaxValueBytes: the compare-and-set checked only the first %d bytes, which the new value shares with the old (LoadsYielded %d)", v, 12+64+1, a.Stats().LoadsYielded)
			require.Equal(t, uint64(1), a.Stats().LoadsYielded)
		})
	}
}

// --- This instance's writes by stripe (localWrites) -----------------------------------

// scStripeMate finds a key of g that shares key's stripe of this instance's write counts
// (localWrites, 1 in 4096), from outside: a load of key (Redis holds nothing for it) yields
// when a Delete of a key of its stripe is made by this instance while its loader runs
// (documented). One Delete of many keys bumps all their stripes at once; bisecting the
// candidates finds one. Each round leaves key absent again.
func scStripeMate(t *testing.T, c *tiered.Cache, g *tiered.Group[string], key string) string {
	t.Helper()
	ctx := context.Background()
	yields := func(cands []string) bool {
		before := c.Stats().LoadsYielded
		_, err := g.GetOrLoad(ctx, key, func(context.Context) (string, error) {
			return "probe", g.Delete(ctx, cands...)
		})
		require.NoError(t, err)
		require.NoError(t, g.Delete(ctx, key))
		return c.Stats().LoadsYielded > before
	}
	cands := make([]string, 6*4096)
	for i := range cands {
		cands[i] = fmt.Sprint("mate-", i)
	}
	require.True(t, yields(cands), "none of %d keys shares the stripe of %q", len(cands), key)
	for len(cands) > 1 {
		half := cands[:len(cands)/2]
		if yields(half) {
			cands = half
		} else {
			cands = cands[len(cands)/2:]
		}
	}
	require.True(t, yields(cands), "%q does not share the stripe of %q", cands[0], key)
	return cands[0]
}

// A load over a value it replaces stores with a compare-and-set, which any write of its key
// made since refuses (storeCond: condSame). It also checks this instance's writes by stripe,
// which only a SET NX needs (a Delete of a key Redis did not hold changes nothing there;
// localWrites' doc: "a load whose read found nothing stores nothing if a write of a key of
// its stripe was made since"). So a Set of another key that shares the stripe (1 in 4096)
// costs the store: the value the load replaces stays, the next read loads again, and
// LoadsYielded counts a yield to a write no one made to the key. With a load of a key Redis
// held nothing for, the same Set costs the store, as the README says (the control).
func TestReviewStoreCondHoleReplacingLoadYieldsToAnotherKeysWrite(t *testing.T) {
	ctx := context.Background()
	tp, _ := scStandalone(t)
	a := tp.cache(t, "mate:", func(o *tiered.Options) { o.FailSafeMaxStale = time.Minute })
	g := tiered.NewGroup[string](a, "g", time.Minute)
	armed(t, a, g)
	mate := scStripeMate(t, a, g, "k")
	for _, h := range scReplaced {
		for _, call := range scShapes {
			t.Run(h.name+" "+call.name, func(t *testing.T) {
				rk := redisKey(t, g, "k")
				h.write(t, tp, rk)
				require.NoError(t, a.HearInvalidationsForTest(ctx))
				before := a.Stats().LoadsYielded
				require.NoError(t, scLoad(ctx, g, call.batch, []string{"k"}, "loaded", func() {
					require.NoError(t, g.Set(ctx, mate, "other key")) // not k: k stays as read
				}))
				stored := strings.Contains(tp.get(t, rk), `"loaded"`)
				require.NoError(t, g.Delete(ctx, "k"))
				require.True(t, stored, "HOLE (minor): a load over a %s stored nothing though no one wrote its key: this instance's Set of %q, another key of its stripe, made it yield (LoadsYielded +%d); the compare-and-set alone knows whether the key was written", h.name, mate, a.Stats().LoadsYielded-before)
				require.Equal(t, before, a.Stats().LoadsYielded, "no write of the key was made: nothing to yield to")
			})
		}
	}
}

// --- Writes that must stand, counted exactly ------------------------------------------

// One batch, and as many concurrent GetOrLoads, over keys Redis held nothing for, a foreign
// value for, or a value past its TTL for; while their loader runs, another instance Sets a
// third of them and Deletes another third (of those Redis held a value for: a Delete of a key
// Redis did not hold is the case the README leaves out). Every write stands (Redis holds the Set's value,
// or nothing), every other key holds the loaded value, each instance serves what Redis
// holds, and LoadsYielded counts exactly the keys written.
func TestReviewStoreCondYieldsCountedExactly(t *testing.T) {
	ctx := context.Background()
	tp, _ := scStandalone(t)
	for _, call := range scShapes {
		t.Run(call.name, func(t *testing.T) {
			prefix := fmt.Sprintf("exact-%v:", call.batch)
			fs := func(o *tiered.Options) { o.FailSafeMaxStale = time.Minute }
			a, b := tp.cache(t, prefix, fs), tp.cache(t, prefix, fs)
			ga := tiered.NewGroup[string](a, "g", time.Minute)
			gb := tiered.NewGroup[string](b, "g", time.Minute)
			armed(t, a, ga)
			held := append([]scHeld{{"nothing", nil}}, scReplaced...)
			var keys []string
			op := map[string]string{} // key -> "Set", "Delete" or ""
			for i, h := range held {
				for j, o := range []string{"Set", "Delete", ""} {
					if h.write == nil && o == "Delete" {
						continue // another instance's Delete of a key Redis did not hold: not covered (README)
					}
					for n := range 3 {
						k := fmt.Sprintf("k%d-%d-%d", i, j, n)
						keys = append(keys, k)
						op[k] = o
						if h.write != nil {
							h.write(t, tp, redisKey(t, ga, k))
						}
					}
				}
			}
			require.NoError(t, a.HearInvalidationsForTest(ctx))
			writes := func() {
				for _, k := range keys {
					switch op[k] {
					case "Set":
						require.NoError(t, gb.Set(ctx, k, "theirs"))
					case "Delete":
						require.NoError(t, gb.Delete(ctx, k))
					}
				}
			}
			if call.batch {
				require.NoError(t, scLoad(ctx, ga, true, keys, "loaded", writes))
			} else {
				var wg sync.WaitGroup
				entered := make(chan struct{}, len(keys))
				release := make(chan struct{})
				errs := make(chan error, len(keys))
				for _, k := range keys {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs <- scLoad(ctx, ga, false, []string{k}, "loaded", func() { entered <- struct{}{}; <-release })
					}()
				}
				for range keys {
					<-entered
				}
				writes()
				close(release)
				wg.Wait()
				close(errs)
				for err := range errs {
					require.NoError(t, err)
				}
			}
			written := 0
			for _, k := range keys {
				in := tp.get(t, redisKey(t, ga, k))
				switch op[k] {
				case "Set":
					written++
					require.Contains(t, in, `"theirs"`, "key %s: the load went over the Set", k)
				case "Delete":
					written++
					require.Empty(t, in, "key %s: the load went over the Delete", k)
				default:
					require.Contains(t, in, `"loaded"`, "key %s: no write was made, the load stores", k)
				}
			}
			require.Equal(t, uint64(written), a.Stats().LoadsYielded, "LoadsYielded counts the keys written while the loader ran, no more, no less")
			for name, c := range map[string]*tiered.Cache{"loader": a, "writer": b} {
				require.NoError(t, c.HearInvalidationsForTest(ctx))
				g := map[string]*tiered.Group[string]{"loader": ga, "writer": gb}[name]
				for _, k := range keys {
					v, err := g.Get(ctx, k)
					switch op[k] {
					case "Set":
						require.NoError(t, err)
						require.Equal(t, "theirs", v, "%s, key %s", name, k)
					case "Delete":
						require.ErrorIs(t, err, tiered.ErrNotFound, "%s, key %s", name, k)
					default:
						require.NoError(t, err)
						require.Equal(t, "loaded", v, "%s, key %s", name, k)
					}
				}
			}
		})
	}
}

// A load of a key Redis held nothing for, while another instance (or this one) Sets the key
// to the very value the loader returns: the Set stands (the load's SET NX is refused, or it
// yields to this instance's own write), the yield is counted once, and both instances serve
// the value, the loader's from L1 after one read.
func TestReviewStoreCondLoadRacesASetOfTheSameValue(t *testing.T) {
	ctx := context.Background()
	tp, _ := scStandalone(t)
	for _, who := range []string{"this", "another"} {
		for _, call := range scShapes {
			t.Run(who+" "+call.name, func(t *testing.T) {
				prefix := fmt.Sprintf("same-%s-%v:", who, call.batch)
				a, b := tp.cache(t, prefix), tp.cache(t, prefix)
				ga := tiered.NewGroup[string](a, "g", time.Minute)
				gb := tiered.NewGroup[string](b, "g", time.Minute)
				writer := gb
				if who == "this" {
					writer = ga
				}
				require.NoError(t, scLoad(ctx, ga, call.batch, []string{"k"}, "same", func() {
					require.NoError(t, writer.Set(ctx, "k", "same", tiered.TTL(time.Hour)))
				}))
				require.Equal(t, uint64(1), a.Stats().LoadsYielded)
				ttl, err := tp.raw.Do(ctx, tp.raw.B().Pttl().Key(redisKey(t, ga, "k")).Build()).AsInt64()
				require.NoError(t, err)
				require.Greater(t, ttl, int64(30*time.Minute/time.Millisecond), "the Set's TTL stands, not the load's")
				require.Equal(t, "same", warm(t, a, ga, "k"))
				v, err := gb.Get(ctx, "k")
				require.NoError(t, err)
				require.Equal(t, "same", v)
			})
		}
	}
}

// --- Operations: ACL, a paused Redis, a cluster ---------------------------------------

// readmeACL is the ACL rule set the README documents (the line "ACL SETUSER tiercache on
// >PASSWORD ..."), without the user, state and password.
func readmeACL(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("../README.md")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "ACL SETUSER tiercache on >PASSWORD "); ok {
			return strings.Fields(rest)
		}
	}
	require.NoError(t, sc.Err())
	t.Fatal("README.md documents no ACL SETUSER line")
	return nil
}

// The ACL the README documents covers the compare-and-set (EVAL, and the GETRANGE and SET
// the script runs): a load over a value it replaces stores, nothing is denied. A user that
// may run loaded scripts only (+evalsha, not +eval; the cache's other scripts loaded) got
// its loads stored before d0c41a4 (a plain SET); now a load over a value it replaces still
// returns the loader's value, but its store (an EVAL) is refused: the value Redis held stays,
// every call loads again, and the log says why at debug level only.
func TestReviewStoreCondDocumentedACL(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	const pw = "S3cr3t-pw-5c0d"
	documented := readmeACL(t)
	var noEval []string
	for _, r := range documented {
		if r != "+eval" {
			noEval = append(noEval, r)
		}
	}
	for _, tc := range []struct {
		name  string
		rules []string
		store bool
	}{{"README's ACL", documented, true}, {"without +eval", noEval, false}} {
		for _, call := range scShapes {
			t.Run(tc.name+" "+call.name, func(t *testing.T) {
				if !tc.store {
					// The scripts the cache runs by EVALSHA are loaded (an admin's SCRIPT LOAD, or
					// another user's first use): a user that may run loaded scripts only.
					admin := newCache(t, s, func(o *tiered.Options) { o.KeyPrefix = "synspirit:" })
					ag := tiered.NewGroup[string](admin, "preload", time.Minute)
					require.NoError(t, scLoad(ctx, ag, call.batch, []string{"k"}, "v", nil))
				}
				user := fmt.Sprintf("tc%v%v", tc.store, call.batch)
				s.SetUser(user, pw, tc.rules...)
				s.Do("ACL", "LOG", "RESET")
				core, logs := observer.New(zap.DebugLevel)
				c, err := tiered.New(ctx, tiered.Options{RedisURL: s.UserURL(user, pw), KeyPrefix: "synspirit:", ExactL1Stats: true, Logger: zap.New(core)})
				require.NoError(t, err, "ACL LOG: %s", aclLog(s))
				t.Cleanup(func() { require.NoError(t, c.Close()) })
				g := tiered.NewGroup[string](c, fmt.Sprintf("acl%v%v", tc.store, call.batch), time.Minute)
				rk := redisKey(t, g, "k")
				s.Do("SET", rk, "not an envelope")
				require.NoError(t, c.HearInvalidationsForTest(ctx))
				require.NoError(t, scLoad(ctx, g, call.batch, []string{"k"}, "loaded", nil), "the caller gets the loaded value either way")
				in, err := s.Do("GET", rk).ToString()
				require.NoError(t, err)
				if tc.store {
					require.Contains(t, in, `"loaded"`, "ACL LOG: %s", aclLog(s))
					require.Empty(t, aclLog(s), "nothing denied")
					return
				}
				require.Equal(t, "not an envelope", in)
				require.Contains(t, aclLog(s), "eval")
				require.NotZero(t, logs.FilterMessage("loaded value not stored in redis").Len(), "the failed store is logged")
				t.Logf("without +eval: Redis still holds %q; logged at %v only", in, logs.FilterMessage("loaded value not stored in redis").All()[0].Level)
			})
		}
	}
}

// CLIENT PAUSE WRITE holds the compare-and-set past its Timeout: the load returns its value,
// the store's fate is unknown and the key is held out of L1 (an EVAL through the listener
// may still run: unsettledWrite). When the pause ends the script runs (nothing wrote the key
// meanwhile), and the key comes back to L1 with the loaded value: the hold is balanced.
func TestReviewStoreCondPausedCAS(t *testing.T) {
	ctx := context.Background()
	tp, s := scStandalone(t)
	for _, call := range scShapes {
		t.Run(call.name, func(t *testing.T) {
			prefix := fmt.Sprintf("pause-%v:", call.batch)
			a := tp.cache(t, prefix)
			g := tiered.NewGroup[string](a, "g", time.Minute)
			armed(t, a, g)
			rk := redisKey(t, g, "k")
			tp.set(t, rk, "not an envelope")
			require.NoError(t, a.HearInvalidationsForTest(ctx))
			require.NoError(t, scLoad(ctx, g, call.batch, []string{"k"}, "loaded", func() {
				s.Do("CLIENT", "PAUSE", "700", "WRITE") // > Timeout (100 ms) and the keeper's PING timeout
			}))
			_, out := notInL1(a, g, "k")
			require.True(t, out, "a key whose store's fate is unknown is served from L1")
			// The compare-and-set goes through the data client, whose connection the timeout
			// closes: the paused script is dropped, or runs, and Redis reports it here. Either
			// way the key comes back: loaded again (or read), served as Redis holds it, then
			// from L1.
			require.Eventually(t, func() bool {
				v, err := g.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "loaded", nil })
				a.WaitL1ForTest()
				return err == nil && v == "loaded" && strings.Contains(tp.get(t, rk), `"loaded"`) && l1Hit(a, func() { _, _ = g.Get(ctx, "k") })
			}, 5*time.Second, tick, "the key never came back to L1, or L1 and Redis disagree")
		})
	}
}

// A cluster: caches with DisableL1 (reads without PTTL), a batch over keys on every master,
// each holding an empty string. Each SET NX is refused and tried again as a compare-and-set
// against "" in a second pipeline, split by node: every key stores, nothing is counted as
// yielded; and keys written by another instance while the loader ran stand.
func TestReviewStoreCondClusterUnsureFallback(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster: skipped with -short")
	}
	ctx := context.Background()
	cl := redistest.StartCluster(t)
	tp := scTopo{name: "cluster", url: cl.URL(), raw: rawClient(t, cl.Addrs()...)}
	noL1 := func(o *tiered.Options) { o.DisableL1 = true }
	a, b := tp.cache(t, "unsure:", noL1), tp.cache(t, "unsure:", noL1)
	ga := tiered.NewGroup[string](a, "g", time.Minute)
	gb := tiered.NewGroup[string](b, "g", time.Minute)
	keys := keysOnEachMaster(t, cl, ga)
	var theirs []string
	for _, k := range keysOnEachMaster(t, cl, ga) {
		theirs = append(theirs, "w"+k)
	}
	all := append(append([]string{}, keys...), theirs...)
	for _, k := range all {
		tp.set(t, redisKey(t, ga, k), "")
	}
	require.NoError(t, scLoad(ctx, ga, true, all, "loaded", func() {
		for _, k := range theirs {
			require.NoError(t, gb.Set(ctx, k, "theirs"))
		}
	}))
	for _, k := range keys {
		v, err := gb.Get(ctx, k)
		require.NoError(t, err, "key %s (master %s): the load did not replace the empty string", k, cl.MasterOfKey(redisKey(t, ga, k)).Addr())
		require.Equal(t, "loaded", v)
	}
	for _, k := range theirs {
		v, err := gb.Get(ctx, k)
		require.NoError(t, err)
		require.Equal(t, "theirs", v, "key %s: the load went over the Set", k)
	}
	require.Equal(t, uint64(len(theirs)), a.Stats().LoadsYielded)
}

// Something replaces the key with another type (a hash) while the loader runs, after the
// load read a value it replaces: the compare-and-set's GETRANGE fails (WRONGTYPE) inside the
// script, nothing is stored over the hash, and the caller still gets the loaded value. The
// write that stood is counted as a Redis error, not in LoadsYielded (logged below).
func TestReviewStoreCondCASOverAKeyOfAnotherType(t *testing.T) {
	ctx := context.Background()
	tp, s := scStandalone(t)
	for _, call := range scShapes {
		t.Run(call.name, func(t *testing.T) {
			prefix := fmt.Sprintf("wrongtype-%v:", call.batch)
			a := tp.cache(t, prefix)
			g := tiered.NewGroup[string](a, "g", time.Minute)
			rk := redisKey(t, g, "k")
			tp.set(t, rk, "not an envelope")
			require.NoError(t, a.HearInvalidationsForTest(ctx))
			errsBefore := a.Stats().L2Errors
			require.NoError(t, scLoad(ctx, g, call.batch, []string{"k"}, "loaded", func() {
				s.Do("DEL", rk)
				s.Do("HSET", rk, "f", "v")
			}))
			typ, err := s.Do("TYPE", rk).ToString()
			require.NoError(t, err)
			require.Equal(t, "hash", typ, "the load went over another client's write")
			t.Logf("LoadsYielded %d, L2Errors +%d", a.Stats().LoadsYielded, a.Stats().L2Errors-errsBefore)
		})
	}
}
