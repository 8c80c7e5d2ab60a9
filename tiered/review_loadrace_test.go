package tiered_test

// A review from outside of the load/write race fix (a load yields to a write of its key made
// while its loader ran). It attacked a first version (cedfe89: SET NX when the read found
// nothing, and no store when the key's L1 stripe or epoch moved since the read). Tests named
// ...Hole... failed on it: the stripe moved for reasons that are not writes (the load's own
// read expiring the key, other loads' stores), an empty string read as no key, a batch
// checked before it encoded, groups without L1 heard nothing, and a GetOrLoad that joined a
// batch's cached miss panicked (older than the fix). The rule now (see storeCond) is a SET NX
// or a compare-and-set of the bytes read, and this instance's own writes; all pass. The
// other tests held against both and stay as regression tests.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// rvCache is a cache of s under prefix.
func rvCache(t *testing.T, s *redistest.Server, prefix string, mod ...func(*tiered.Options)) *tiered.Cache {
	t.Helper()
	return newCache(t, s, append([]func(*tiered.Options){func(o *tiered.Options) { o.KeyPrefix = prefix }}, mod...)...)
}

// rvInRedis is what a cache that held nothing before reads for key of group name: its value,
// or the error of its Get.
func rvInRedis(t *testing.T, s *redistest.Server, prefix, name, key string) (string, error) {
	t.Helper()
	g := tiered.NewGroup[string](rvCache(t, s, prefix), name, time.Minute)
	return g.Get(context.Background(), key)
}

// rvHeld is a loader held until released: entered is closed when it is first called.
type rvHeld struct {
	entered, release chan struct{}
	once             sync.Once
}

func newHeld() *rvHeld { return &rvHeld{entered: make(chan struct{}), release: make(chan struct{})} }

func (h *rvHeld) wait() {
	h.once.Do(func() { close(h.entered) })
	<-h.release
}

// loadNow runs a GetOrLoad (or, with batch, a GetOrLoadMany of keys) of g in the background
// whose loader returns v for every key, once held is released. done gets its error.
func loadNow(ctx context.Context, g *tiered.Group[string], batch bool, keys []string, v string, held *rvHeld) <-chan error {
	done := make(chan error, 1)
	go func() {
		if batch {
			_, err := g.GetOrLoadMany(ctx, keys, loadAllAsAfter(held.wait, v))
			done <- err
			return
		}
		_, err := g.GetOrLoad(ctx, keys[0], func(context.Context) (string, error) { held.wait(); return v, nil })
		done <- err
	}()
	return done
}

// --- Loads that must store -------------------------------------------------------------

// A load of a key whose Redis TTL has passed must store what it loaded. Redis deletes such a
// key when the load's own read touches it (lazy expiry) and reports that deletion to every
// tracking client: the loading instance hears an "invalidation" of the key it is loading,
// caused by its own read, and (before the fix's stripe check) stored nonetheless. Active
// expiry is turned off so that the key is still there, expired, when the load reads it, as
// it is in production for any key the expiry cycle has not sampled yet.
func TestReviewHoleLoadOfAKeyRedisExpiredIsStored(t *testing.T) {
	s := redistest.Start(t, redistest.WithArgs("--enable-debug-command", "yes"))
	s.Do("DEBUG", "SET-ACTIVE-EXPIRE", "0")
	for _, shape := range []struct {
		name     string
		batch    bool
		keyspace bool // BusOnly with KeyspaceNotifications: the expiry is heard as an "expired" event
	}{{"GetOrLoad", false, false}, {"GetOrLoadMany", true, false}, {"GetOrLoad, BusOnly with keyspace events", false, true}} {
		t.Run(shape.name, func(t *testing.T) {
			ctx := context.Background()
			prefix := fmt.Sprintf("exp-%v-%v:", shape.batch, shape.keyspace)
			mod := func(o *tiered.Options) {
				if shape.keyspace {
					o.Invalidation, o.KeyspaceNotifications, o.ConfigureKeyspaceNotifications = tiered.BusOnly, true, true
				}
			}
			a := rvCache(t, s, prefix, mod)
			b := rvCache(t, s, prefix, mod)
			ga := tiered.NewGroup[string](a, "g", time.Minute)
			gb := tiered.NewGroup[string](b, "g", time.Minute)
			const short = 20 * time.Millisecond
			require.NoError(t, gb.Set(ctx, "k", "old", tiered.TTL(short)))
			require.NoError(t, a.HearInvalidationsForTest(ctx)) // the Set's own push, before the load
			time.Sleep(3 * short)                               // past its Redis TTL: no event to wait for
			before, expired := a.Stats().LoadsYielded, a.Stats().Invalidations.Keyspace
			var loaderErr error
			load := func() {
				// A loader slower than a push's trip (any database query is): the instance has
				// heard whatever Redis reported because of the load's own read.
				loaderErr = a.HearInvalidationsForTest(ctx)
				if shape.keyspace && !pollUntil(func() bool { return a.Stats().Invalidations.Keyspace > expired }) {
					loaderErr = errors.New("no keyspace event for the expired key")
				}
			}
			if shape.batch {
				got, err := ga.GetOrLoadMany(ctx, []string{"k"}, func(_ context.Context, _ []string) (map[string]string, error) {
					load()
					return map[string]string{"k": "new"}, nil
				})
				require.NoError(t, err)
				require.Equal(t, "new", got["k"])
			} else {
				v, err := ga.GetOrLoad(ctx, "k", func(context.Context) (string, error) { load(); return "new", nil })
				require.NoError(t, err)
				require.Equal(t, "new", v)
			}
			require.NoError(t, loaderErr)
			v, err := rvInRedis(t, s, prefix, "g", "k")
			require.NoError(t, err, "HOLE: the load of a key whose Redis TTL had passed stored nothing: Redis's lazy expiry of the key, caused by the load's own read, was taken for a write made meanwhile (LoadsYielded +%d)", a.Stats().LoadsYielded-before)
			require.Equal(t, "new", v)
			require.Equal(t, before, a.Stats().LoadsYielded, "no write of the key was made during the load: nothing to yield to")
		})
	}
}

// pollUntil reports whether cond became true within waitFor (for use off the test's
// goroutine, where require.Eventually cannot fail the test).
func pollUntil(cond func() bool) bool {
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(tick)
	}
	return true
}

// Concurrent loads of different keys on one instance must all store: no write of any of
// them is made. A load's store through the listener bumps its key's stripe (l1.Renew, so
// that reads in flight of the key are not served), and any other load in flight of a key of
// that stripe (1 in 4096) then takes that bump for a write of its own key and stores
// nothing. Two cold pages of 1000 keys loaded at once lose about a fifth of the second's
// stores; 500 GetOrLoads of distinct keys in flight at once lose a few dozen.
func TestReviewHoleConcurrentLoadsOfOtherKeysDoNotYield(t *testing.T) {
	s := redistest.Start(t)
	t.Run("two batches", func(t *testing.T) {
		ctx := context.Background()
		prefix := "cc-batch:"
		a := rvCache(t, s, prefix)
		g := tiered.NewGroup[string](a, "g", time.Minute)
		const n = 1000
		page := func(p string) []string {
			ks := make([]string, n)
			for i := range ks {
				ks[i] = fmt.Sprintf("%s%d", p, i)
			}
			return ks
		}
		pa, pb := page("a"), page("b")
		ha, hb := newHeld(), newHeld()
		da := loadNow(ctx, g, true, pa, "v", ha)
		db := loadNow(ctx, g, true, pb, "v", hb)
		<-ha.entered
		<-hb.entered // both read Redis (nothing) before either stores
		close(ha.release)
		require.NoError(t, <-da)
		close(hb.release)
		require.NoError(t, <-db)
		got, err := tiered.NewGroup[string](rvCache(t, s, prefix), "g", time.Minute).GetMany(ctx, append(pa, pb...))
		require.NoError(t, err)
		require.Equal(t, 0, 2*n-len(got), "HOLE: %d of %d keys loaded by two concurrent batches are not in Redis, and no write of any was made: the first batch's stores moved their stripes, and the second batch yielded every key sharing one (LoadsYielded %d)", 2*n-len(got), 2*n, a.Stats().LoadsYielded)
		require.Zero(t, a.Stats().LoadsYielded)
	})
	t.Run("single loads", func(t *testing.T) {
		ctx := context.Background()
		prefix := "cc-single:"
		a := rvCache(t, s, prefix)
		g := tiered.NewGroup[string](a, "g", time.Minute)
		const n = 500
		helds := make([]*rvHeld, n)
		dones := make([]<-chan error, n)
		keys := make([]string, n)
		for i := range n {
			keys[i], helds[i] = fmt.Sprint("k", i), newHeld()
			dones[i] = loadNow(ctx, g, false, keys[i:i+1], "v", helds[i])
		}
		for _, h := range helds {
			<-h.entered
		}
		for i := range n { // one store after the other
			close(helds[i].release)
			require.NoError(t, <-dones[i])
		}
		got, err := tiered.NewGroup[string](rvCache(t, s, prefix), "g", time.Minute).GetMany(ctx, keys)
		require.NoError(t, err)
		require.Equal(t, 0, n-len(got), "HOLE: %d of %d concurrent GetOrLoads of distinct keys stored nothing though no key was written: another load's store moved their stripe (LoadsYielded %d)", n-len(got), n, a.Stats().LoadsYielded)
	})
}

// A load must overwrite what Redis holds that is not a servable value: a foreign or
// undecodable value, one larger than the group's MaxValueBytes, one whose tag was
// invalidated, one past its TTL kept for fail-safe. None of them is a write made during the
// load. Each is then read back by another instance, and nothing was counted as yielded.
func TestReviewLoadOverwritesWhatItCannotServe(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	cases := []struct {
		name  string
		setup func(t *testing.T, prefix string, a *tiered.Cache, redisKey string)
		opts  []tiered.GroupOption
		mod   func(*tiered.Options)
	}{
		{name: "foreign value", setup: func(t *testing.T, _ string, _ *tiered.Cache, rk string) {
			s.Do("SET", rk, "not an envelope", "PX", "60000")
		}},
		{name: "other codec", setup: func(t *testing.T, prefix string, _ *tiered.Cache, _ string) {
			w := tiered.NewGroup[[]byte](rvCache(t, s, prefix), "g", time.Minute, tiered.WithCodec(tiered.Raw{}))
			require.NoError(t, w.Set(ctx, "k", []byte("raw")))
		}},
		{name: "larger than MaxValueBytes", opts: []tiered.GroupOption{tiered.WithMaxValueBytes(64)}, setup: func(t *testing.T, prefix string, _ *tiered.Cache, _ string) {
			w := tiered.NewGroup[string](rvCache(t, s, prefix), "g", time.Minute, tiered.WithMaxValueBytes(1<<20))
			require.NoError(t, w.Set(ctx, "k", string(make([]byte, 4096))))
		}},
		{name: "tag invalidated", setup: func(t *testing.T, prefix string, a *tiered.Cache, _ string) {
			w := tiered.NewGroup[string](rvCache(t, s, prefix), "g", time.Minute)
			require.NoError(t, w.Set(ctx, "k", "old", tiered.Tags("t")))
			require.NoError(t, a.InvalidateTags(ctx, "t"))
		}},
		{name: "stale, kept for fail-safe", mod: func(o *tiered.Options) { o.FailSafeMaxStale = time.Minute }, setup: func(t *testing.T, prefix string, _ *tiered.Cache, _ string) {
			w := tiered.NewGroup[string](rvCache(t, s, prefix, func(o *tiered.Options) { o.FailSafeMaxStale = time.Minute }), "g", time.Minute)
			require.NoError(t, w.Set(ctx, "k", "old", tiered.TTL(20*time.Millisecond)))
			time.Sleep(60 * time.Millisecond) // past its TTL: no event to wait for
		}},
	}
	for i, tc := range cases {
		for _, batch := range []bool{false, true} {
			name := tc.name + map[bool]string{false: " GetOrLoad", true: " GetOrLoadMany"}[batch]
			t.Run(name, func(t *testing.T) {
				prefix := fmt.Sprintf("ow%d-%v:", i, batch)
				mods := []func(*tiered.Options){}
				if tc.mod != nil {
					mods = append(mods, tc.mod)
				}
				a := rvCache(t, s, prefix, mods...)
				g := tiered.NewGroup[string](a, "g", time.Minute, tc.opts...)
				tc.setup(t, prefix, a, redisKey(t, g, "k"))
				require.NoError(t, a.HearInvalidationsForTest(ctx)) // the setup's writes, before the load
				done := loadNow(ctx, g, batch, []string{"k"}, "loaded", &rvHeld{entered: make(chan struct{}), release: closed()})
				require.NoError(t, <-done)
				v, err := rvInRedis(t, s, prefix, "g", "k")
				require.NoError(t, err, "the load did not overwrite a value it could not serve (%s)", tc.name)
				require.Equal(t, "loaded", v)
				require.Zero(t, a.Stats().LoadsYielded, "nothing was written during the load")
				require.NoError(t, a.HearInvalidationsForTest(ctx))
				v, err = g.Get(ctx, "k")
				require.NoError(t, err)
				require.Equal(t, "loaded", v, "the loading instance serves what Redis holds")
			})
		}
	}
}

func closed() chan struct{} { c := make(chan struct{}); close(c); return c }

// A cold GetOrLoad (and GetOrLoadMany) on a cache and group made a moment ago stores its
// value: another instance reads it from Redis. Repeated on fresh caches, so that the load
// often runs while the group's tracking prefix is being armed.
func TestReviewColdLoadIsStored(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for i := range 20 {
		prefix := fmt.Sprintf("cold%d:", i)
		a := rvCache(t, s, prefix)
		g := tiered.NewGroup[string](a, "g", time.Minute)
		v, err := g.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v", nil })
		require.NoError(t, err)
		require.Equal(t, "v", v)
		_, err = g.GetOrLoadMany(ctx, []string{"m1", "m2"}, func(_ context.Context, ks []string) (map[string]string, error) {
			return map[string]string{"m1": "v", "m2": "v"}, nil
		})
		require.NoError(t, err)
		other := tiered.NewGroup[string](rvCache(t, s, prefix), "g", time.Minute)
		got, err := other.GetMany(ctx, []string{"k", "m1", "m2"})
		require.NoError(t, err)
		require.Len(t, got, 3, "a cold load on a new cache was not stored (round %d)", i)
		require.Zero(t, a.Stats().LoadsYielded)
	}
}

// --- Writes that must stand ------------------------------------------------------------

// A group made WithoutL1 is not tracked by its instance: it hears no other instance's write
// of its keys, as a cache with DisableL1 does not. Its load of a key Redis held a stale value
// of (fail-safe) stores with a plain SET, over another instance's Set made meanwhile. The
// README's "Not covered" names DisableL1 only; this is the same hole for WithoutL1 groups.
func TestReviewHoleWithoutL1GroupLoadGoesOverAnotherInstancesWrite(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for _, op := range []string{"Set", "Delete"} {
		t.Run(op, func(t *testing.T) {
			prefix := "nol1-" + op + ":"
			fs := func(o *tiered.Options) { o.FailSafeMaxStale = time.Minute }
			a, b := rvCache(t, s, prefix, fs), rvCache(t, s, prefix, fs)
			ga := tiered.NewGroup[string](a, "g", time.Minute, tiered.WithoutL1())
			gb := tiered.NewGroup[string](b, "g", time.Minute)
			require.NoError(t, gb.Set(ctx, "k", "old", tiered.TTL(20*time.Millisecond)))
			time.Sleep(60 * time.Millisecond) // past its TTL, kept for fail-safe: no event to wait for
			held := newHeld()
			done := loadNow(ctx, ga, false, []string{"k"}, "loaded", held)
			<-held.entered
			if op == "Set" {
				require.NoError(t, gb.Set(ctx, "k", "theirs"))
			} else {
				require.NoError(t, gb.Delete(ctx, "k"))
			}
			require.NoError(t, a.HearInvalidationsForTest(ctx))
			close(held.release)
			require.NoError(t, <-done)
			v, err := rvInRedis(t, s, prefix, "g", "k")
			if op == "Set" {
				require.NoError(t, err)
				require.Equal(t, "theirs", v, "HOLE (undocumented): a WithoutL1 group's load went over another instance's Set made while its loader ran")
			} else {
				require.ErrorIs(t, err, tiered.ErrNotFound, "HOLE (undocumented): a WithoutL1 group's load went over another instance's Delete made while its loader ran (Redis holds %q)", v)
			}
		})
	}
}

// BusOnly mode: another instance's Set or Delete during a load reaches the loading instance
// on the bus, and the load yields, whether Redis held nothing or a stale value. (A Delete of
// a key Redis did not hold is published too: unlike tracking, the bus covers it.)
func TestReviewBusOnlyLoadYields(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for _, present := range []bool{false, true} {
		for _, op := range []string{"Set", "Delete"} {
			for _, batch := range []bool{false, true} {
				name := fmt.Sprintf("%s present=%v batch=%v", op, present, batch)
				t.Run(name, func(t *testing.T) {
					prefix := fmt.Sprintf("bus-%s-%v-%v:", op, present, batch)
					mod := func(o *tiered.Options) { o.Invalidation = tiered.BusOnly; o.FailSafeMaxStale = time.Minute }
					a, b := rvCache(t, s, prefix, mod), rvCache(t, s, prefix, mod)
					require.Equal(t, tiered.BusOnly, a.Mode())
					ga := tiered.NewGroup[string](a, "g", time.Minute)
					gb := tiered.NewGroup[string](b, "g", time.Minute)
					if present {
						require.NoError(t, gb.Set(ctx, "k", "old", tiered.TTL(20*time.Millisecond)))
						time.Sleep(60 * time.Millisecond) // past its TTL: no event to wait for
					}
					held := newHeld()
					done := loadNow(ctx, ga, batch, []string{"k"}, "loaded", held)
					<-held.entered
					heard := a.Stats().Invalidations.Bus
					if op == "Set" {
						require.NoError(t, gb.Set(ctx, "k", "theirs"))
					} else {
						require.NoError(t, gb.Delete(ctx, "k"))
					}
					require.Eventually(t, func() bool { return a.Stats().Invalidations.Bus > heard }, waitFor, tick, "the bus message reaches the loading instance")
					close(held.release)
					require.NoError(t, <-done)
					v, err := rvInRedis(t, s, prefix, "g", "k")
					if op == "Set" {
						require.NoError(t, err)
						require.Equal(t, "theirs", v, "the load went over the Set")
					} else {
						require.ErrorIs(t, err, tiered.ErrNotFound, "the load went over the Delete (Redis holds %q)", v)
					}
					require.Equal(t, uint64(1), a.Stats().LoadsYielded)
				})
			}
		}
	}
}

// LoadLockTTL: instance A holds the load lock and loads; B waits for A's value; C sets the
// key meanwhile. A's store yields (SET NX, or the stripe for a stale value), B returns C's
// value, and every instance then serves C's value.
func TestReviewLoadLockHolderYields(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for _, present := range []bool{false, true} {
		t.Run(fmt.Sprintf("present=%v", present), func(t *testing.T) {
			prefix := fmt.Sprintf("lock-%v:", present)
			mod := func(o *tiered.Options) { o.LoadLockTTL = 5 * time.Second; o.FailSafeMaxStale = time.Minute }
			a, b, c := rvCache(t, s, prefix, mod), rvCache(t, s, prefix, mod), rvCache(t, s, prefix, mod)
			ga := tiered.NewGroup[string](a, "g", time.Minute)
			gb := tiered.NewGroup[string](b, "g", time.Minute)
			gc := tiered.NewGroup[string](c, "g", time.Minute)
			if present {
				require.NoError(t, gc.Set(ctx, "k", "old", tiered.TTL(20*time.Millisecond)))
				time.Sleep(60 * time.Millisecond) // past its TTL: no event to wait for
			}
			held := newHeld()
			done := loadNow(ctx, ga, false, []string{"k"}, "loaded-a", held)
			<-held.entered // A holds the lock
			bDone := make(chan string, 1)
			go func() {
				v, err := gb.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "loaded-b", nil })
				if err != nil {
					v = "error: " + err.Error()
				}
				bDone <- v
			}()
			require.NoError(t, gc.Set(ctx, "k", "theirs"))
			require.Equal(t, "theirs", <-bDone, "the waiter finds the Set's value")
			require.NoError(t, a.HearInvalidationsForTest(ctx))
			close(held.release)
			require.NoError(t, <-done)
			v, err := rvInRedis(t, s, prefix, "g", "k")
			require.NoError(t, err)
			require.Equal(t, "theirs", v, "the lock holder's load went over the Set")
			require.Equal(t, uint64(1), a.Stats().LoadsYielded)
			for name, cc := range map[string]*tiered.Cache{"a": a, "b": b} {
				require.NoError(t, cc.HearInvalidationsForTest(ctx))
				g := map[string]*tiered.Group[string]{"a": ga, "b": gb}[name]
				v, err := g.Get(ctx, "k")
				require.NoError(t, err)
				require.Equal(t, "theirs", v, "instance %s", name)
			}
		})
	}
}

// A Redis cluster: a batch over keys on every master, each set by another instance while
// the loader runs (Redis held nothing for half of them, a stale value for the other half).
// Every Set stands, on every master, and the loading instance serves the Sets' values.
func TestReviewClusterBatchYields(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster: skipped with -short")
	}
	cl := redistest.StartCluster(t)
	ctx := context.Background()
	mk := func() *tiered.Cache {
		return newCacheAt(t, cl.URL(), func(o *tiered.Options) { o.KeyPrefix, o.FailSafeMaxStale = "rv:", time.Minute })
	}
	a, b := mk(), mk()
	ga := tiered.NewGroup[string](a, "g", time.Minute)
	gb := tiered.NewGroup[string](b, "g", time.Minute)
	absent := keysOnEachMaster(t, cl, ga)
	var stale []string
	for _, k := range keysOnEachMaster(t, cl, ga) {
		stale = append(stale, "s"+k)
	}
	for _, k := range stale {
		require.NoError(t, gb.Set(ctx, k, "old", tiered.TTL(20*time.Millisecond)))
	}
	time.Sleep(60 * time.Millisecond) // past their TTL: no event to wait for
	keys := append(append([]string{}, absent...), stale...)
	for _, batch := range []bool{true, false} {
		release := make(chan struct{})
		var dones []<-chan error
		var helds []*rvHeld
		if batch {
			helds = append(helds, &rvHeld{entered: make(chan struct{}), release: release})
			dones = append(dones, loadNow(ctx, ga, true, keys, "loaded", helds[0]))
		} else {
			for _, k := range keys {
				helds = append(helds, &rvHeld{entered: make(chan struct{}), release: release})
				dones = append(dones, loadNow(ctx, ga, false, []string{k}, "loaded", helds[len(helds)-1]))
			}
		}
		for _, h := range helds {
			<-h.entered
		}
		for _, k := range keys {
			require.NoError(t, gb.Set(ctx, k, fmt.Sprint("theirs-", batch)))
		}
		require.NoError(t, a.HearInvalidationsForTest(ctx))
		close(release)
		for _, d := range dones {
			require.NoError(t, <-d)
		}
		require.NoError(t, a.HearInvalidationsForTest(ctx))
		for _, k := range keys {
			v, err := gb.Get(ctx, k)
			require.NoError(t, err)
			require.Equal(t, fmt.Sprint("theirs-", batch), v, "key %s (batch %v): the load went over the Set", k, batch)
			v, err = ga.Get(ctx, k)
			require.NoError(t, err)
			require.Equal(t, fmt.Sprint("theirs-", batch), v, "key %s: the loading instance serves the Set", k)
		}
		if !batch {
			break
		}
		for _, k := range keys { // for the single loads' round: nothing in Redis or stale again
			require.NoError(t, gb.Delete(ctx, k))
		}
		for _, k := range stale {
			require.NoError(t, gb.Set(ctx, k, "old", tiered.TTL(20*time.Millisecond)))
		}
		time.Sleep(60 * time.Millisecond)
		require.NoError(t, a.HearInvalidationsForTest(ctx))
	}
}

// A batch whose loader returns a value over MaxValueBytes for a key written meanwhile: the
// value is returned with an error matching ErrTooLarge, as a GetOrLoad does (its encode
// comes before its yield check), and as the batch does when no write raced it. The batch
// checks for a yield first and drops the key before encoding it: the caller is not told the
// value is too large, and LoadsYielded counts a store that could never have been made.
func TestReviewHoleBatchYieldHidesTooLarge(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for _, batch := range []bool{false, true} {
		t.Run(map[bool]string{false: "GetOrLoad", true: "GetOrLoadMany"}[batch], func(t *testing.T) {
			prefix := fmt.Sprintf("big-%v:", batch)
			a := rvCache(t, s, prefix)
			g := tiered.NewGroup[string](a, "g", time.Minute, tiered.WithMaxValueBytes(16))
			big := string(make([]byte, 100))
			held := newHeld()
			done := make(chan error, 1)
			go func() {
				var err error
				if batch {
					_, err = g.GetOrLoadMany(ctx, []string{"k"}, func(context.Context, []string) (map[string]string, error) {
						held.wait()
						return map[string]string{"k": big}, nil
					})
				} else {
					_, err = g.GetOrLoad(ctx, "k", func(context.Context) (string, error) { held.wait(); return big, nil })
				}
				done <- err
			}()
			<-held.entered
			require.NoError(t, g.Delete(ctx, "k")) // this instance's Delete: the stripe moves
			close(held.release)
			err := <-done
			require.ErrorIs(t, err, tiered.ErrTooLarge, "HOLE: a loaded value over MaxValueBytes is returned without ErrTooLarge when its key was written during the load")
			require.Zero(t, a.Stats().LoadsYielded, "HOLE: a value too large to store was counted as a load that yielded")
		})
	}
}

// A GetOrLoad that joins a batch's load of its key (WithNotFoundTTL, the loader leaves the
// key out) gets what a GetOrLoad alone gets: ErrNotFound, whether or not the key was deleted
// during the load (the batch then yields, storing no cached miss). And a batch that joins a
// GetOrLoad's cached miss gets what a batch alone gets: the key absent, no error.
func TestReviewHoleJoinedLoadsOfACachedMiss(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for _, race := range []bool{false, true} {
		t.Run(fmt.Sprintf("GetOrLoad joins a batch, deleted meanwhile=%v", race), func(t *testing.T) {
			prefix := fmt.Sprintf("join-b-%v:", race)
			a := rvCache(t, s, prefix)
			g := tiered.NewGroup[string](a, "g", time.Minute, tiered.WithNotFoundTTL(time.Minute))
			held := newHeld()
			bdone := make(chan error, 1)
			go func() {
				_, err := g.GetOrLoadMany(ctx, []string{"k"}, func(context.Context, []string) (map[string]string, error) {
					held.wait()
					return map[string]string{}, nil
				})
				bdone <- err
			}()
			<-held.entered
			shared := a.Stats().LoadsShared
			sdone := make(chan error, 1)
			go func() {
				defer func() {
					if r := recover(); r != nil {
						sdone <- fmt.Errorf("panic: %v", r)
					}
				}()
				_, err := g.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "", tiered.ErrNotFound })
				sdone <- err
			}()
			require.Eventually(t, func() bool { return a.Stats().LoadsShared > shared }, waitFor, tick, "the GetOrLoad joins the batch")
			if race {
				require.NoError(t, g.Delete(ctx, "k"))
			}
			close(held.release)
			require.NoError(t, <-bdone)
			err := <-sdone
			require.ErrorIs(t, err, tiered.ErrNotFound, "HOLE: a GetOrLoad that joined a batch's cached miss got %v, not ErrNotFound", err)
		})
	}
	t.Run("batch joins a GetOrLoad", func(t *testing.T) {
		prefix := "join-s:"
		a := rvCache(t, s, prefix)
		g := tiered.NewGroup[string](a, "g", time.Minute, tiered.WithNotFoundTTL(time.Minute))
		held := newHeld()
		sdone := make(chan error, 1)
		go func() {
			_, err := g.GetOrLoad(ctx, "k", func(context.Context) (string, error) { held.wait(); return "", tiered.ErrNotFound })
			sdone <- err
		}()
		<-held.entered
		shared := a.Stats().LoadsShared
		bdone := make(chan error, 1)
		go func() {
			got, err := g.GetOrLoadMany(ctx, []string{"k"}, func(context.Context, []string) (map[string]string, error) { return nil, nil })
			if err == nil && len(got) != 0 {
				err = fmt.Errorf("got %v", got)
			}
			bdone <- err
		}()
		require.Eventually(t, func() bool { return a.Stats().LoadsShared > shared }, waitFor, tick, "the batch joins the GetOrLoad")
		close(held.release)
		require.ErrorIs(t, <-sdone, tiered.ErrNotFound)
		require.NoError(t, <-bdone, "HOLE: a batch that joined a GetOrLoad's cached miss fails, where a batch alone returns the key absent")
	})
}

// Clear, InvalidateTags and Flush during a load: the loaded value is never served after
// them (Clear: the load stores under the old generation; tags: the value carries the tag's
// old version), on either instance.
func TestReviewLoadAcrossClearAndTags(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for _, op := range []string{"Clear", "InvalidateTags"} {
		for _, who := range []string{"this", "another"} {
			for _, batch := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s on %s batch=%v", op, who, batch), func(t *testing.T) {
					prefix := fmt.Sprintf("ct-%s-%s-%v:", op, who, batch)
					a, b := rvCache(t, s, prefix), rvCache(t, s, prefix)
					ga := tiered.NewGroup[string](a, "g", time.Minute)
					gb := tiered.NewGroup[string](b, "g", time.Minute)
					writerC, writerG := a, ga
					if who == "another" {
						writerC, writerG = b, gb
					}
					held := newHeld()
					done := make(chan error, 1)
					go func() {
						var err error
						if batch {
							_, err = ga.GetOrLoadMany(ctx, []string{"k"}, func(context.Context, []string) (map[string]string, error) {
								held.wait()
								return map[string]string{"k": "loaded"}, nil
							}, tiered.Tags("t"))
						} else {
							_, err = ga.GetOrLoad(ctx, "k", func(context.Context) (string, error) { held.wait(); return "loaded", nil }, tiered.Tags("t"))
						}
						done <- err
					}()
					<-held.entered
					if op == "Clear" {
						require.NoError(t, writerG.Clear(ctx))
					} else {
						require.NoError(t, writerC.InvalidateTags(ctx, "t"))
					}
					require.NoError(t, a.HearInvalidationsForTest(ctx))
					close(held.release)
					require.NoError(t, <-done)
					require.NoError(t, a.HearInvalidationsForTest(ctx))
					require.NoError(t, b.HearInvalidationsForTest(ctx))
					for name, g := range map[string]*tiered.Group[string]{"loader": ga, "other": gb} {
						require.Eventually(t, func() bool {
							_, err := g.Get(ctx, "k")
							return errors.Is(err, tiered.ErrNotFound)
						}, waitFor, tick, "%s serves a value loaded before the %s", name, op)
					}
				})
			}
		}
	}
}

// After a yield the loading instance's L1 holds nothing of the loaded value: it serves the
// write, on the next Get and on the next GetOrLoad (no loader call), single and batch.
func TestReviewNoLoadedValueInL1AfterAYield(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for _, batch := range []bool{false, true} {
		for _, who := range []string{"this", "another"} {
			t.Run(fmt.Sprintf("%s batch=%v", who, batch), func(t *testing.T) {
				prefix := fmt.Sprintf("l1-%s-%v:", who, batch)
				a, b := rvCache(t, s, prefix), rvCache(t, s, prefix)
				ga := tiered.NewGroup[string](a, "g", time.Minute)
				gb := tiered.NewGroup[string](b, "g", time.Minute)
				writer := ga
				if who == "another" {
					writer = gb
				}
				held := newHeld()
				done := loadNow(ctx, ga, batch, []string{"k", "j"}[:map[bool]int{false: 1, true: 2}[batch]], "loaded", held)
				<-held.entered
				require.NoError(t, writer.Set(ctx, "k", "theirs"))
				require.NoError(t, a.HearInvalidationsForTest(ctx))
				close(held.release)
				require.NoError(t, <-done)
				require.GreaterOrEqual(t, a.Stats().LoadsYielded, uint64(1))
				a.WaitL1ForTest()
				for range 3 {
					v, err := ga.Get(ctx, "k")
					require.NoError(t, err)
					require.Equal(t, "theirs", v)
				}
				loads := a.Stats().Loads
				v, err := ga.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "again", nil })
				require.NoError(t, err)
				require.Equal(t, "theirs", v)
				require.Equal(t, loads, a.Stats().Loads, "the write is served, not loaded again")
			})
		}
	}
}

// An eager refresh whose loader runs while its key is set or deleted, on this instance or
// another, yields: the write stands everywhere, LoadsYielded counts it and Refreshes does
// not. Without a write the refresh stores, and nothing is counted as yielded.
func TestReviewEagerRefreshYieldsAndCounts(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	for _, op := range []string{"none", "Set", "Delete"} {
		for _, who := range []string{"this", "another"} {
			if op == "none" && who == "another" {
				continue
			}
			t.Run(op+" on "+who, func(t *testing.T) {
				prefix := "er-" + op + "-" + who + ":"
				a := rvCache(t, s, prefix, func(o *tiered.Options) { o.EagerRefresh = 0.5 })
				b := rvCache(t, s, prefix)
				ga := tiered.NewGroup[string](a, "hot", 600*time.Millisecond)
				gb := tiered.NewGroup[string](b, "hot", 600*time.Millisecond)
				writer := ga
				if who == "another" {
					writer = gb
				}
				var loads sync.Mutex
				n := 0
				held := newHeld()
				load := func(context.Context) (string, error) {
					loads.Lock()
					n++
					first := n == 1
					loads.Unlock()
					if first {
						return "v1", nil
					}
					held.wait()
					return "refreshed", nil
				}
				_, err := ga.GetOrLoad(ctx, "k", load)
				require.NoError(t, err)
				warm(t, a, ga, "k")
				require.Eventually(t, func() bool { // past half the TTL, a hit starts the refresh
					_, err := ga.GetOrLoad(ctx, "k", load)
					require.NoError(t, err)
					loads.Lock()
					defer loads.Unlock()
					return n == 2
				}, time.Second, tick)
				<-held.entered
				switch op {
				case "Set":
					require.NoError(t, writer.Set(ctx, "k", "theirs"))
				case "Delete":
					require.NoError(t, writer.Delete(ctx, "k"))
				}
				require.NoError(t, a.HearInvalidationsForTest(ctx))
				close(held.release)
				require.Eventually(t, func() bool { return a.RefreshingForTest() == 0 }, waitFor, tick)
				v, err := rvInRedis(t, s, prefix, "hot", "k")
				st := a.Stats()
				switch op {
				case "none":
					require.NoError(t, err)
					require.Equal(t, "refreshed", v)
					require.Equal(t, uint64(1), st.Refreshes)
					require.Zero(t, st.LoadsYielded)
				case "Set":
					require.NoError(t, err)
					require.Equal(t, "theirs", v, "the refresh went over the Set")
				case "Delete":
					require.ErrorIs(t, err, tiered.ErrNotFound, "the refresh went over the Delete (Redis holds %q)", v)
				}
				if op != "none" {
					require.Equal(t, uint64(1), st.LoadsYielded)
					require.Zero(t, st.Refreshes)
				}
			})
		}
	}
}

// WithSoftTimeout: the caller gets the stale value past the soft timeout, and the load goes
// on in the background; a Set of the key by another instance meanwhile stands.
func TestReviewSoftTimeoutBackgroundLoadYields(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	prefix := "soft:"
	fs := func(o *tiered.Options) { o.FailSafeMaxStale = time.Minute }
	a, b := rvCache(t, s, prefix, fs), rvCache(t, s, prefix, fs)
	ga := tiered.NewGroup[string](a, "g", time.Minute, tiered.WithSoftTimeout(20*time.Millisecond))
	gb := tiered.NewGroup[string](b, "g", time.Minute)
	require.NoError(t, gb.Set(ctx, "k", "old", tiered.TTL(20*time.Millisecond)))
	time.Sleep(60 * time.Millisecond) // past its TTL, kept for fail-safe: no event to wait for
	held := newHeld()
	v, err := ga.GetOrLoad(ctx, "k", func(context.Context) (string, error) { held.wait(); return "loaded", nil })
	require.NoError(t, err)
	require.Equal(t, "old", v, "the stale value, past the soft timeout")
	<-held.entered
	require.NoError(t, gb.Set(ctx, "k", "theirs"))
	require.NoError(t, a.HearInvalidationsForTest(ctx))
	close(held.release)
	require.Eventually(t, func() bool { return a.Stats().LoadsYielded == 1 }, waitFor, tick, "the background load yields")
	v, err = rvInRedis(t, s, prefix, "g", "k")
	require.NoError(t, err)
	require.Equal(t, "theirs", v)
}

// A key holding an empty string (written by anything else: another program, a redis-cli
// SET, with no TTL) reads as nothing ("" is no envelope), so the load stores with SET NX,
// which Redis refuses: the key exists. Every load of it then yields, forever: nothing is
// ever cached for the key, and LoadsYielded counts a write that was made before the read.
// A foreign non-empty value, by contrast, is overwritten (TestReviewLoadOverwritesWhatItCannotServe).
func TestReviewHoleEmptyStringInRedisBlocksTheKeyForever(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	// Without L1 a read asks no PTTL, so it cannot tell an empty string from no key: its SET NX
	// is refused, and it stores over either (see storeCond).
	shapes := map[string]struct {
		cache []func(*tiered.Options)
		group []tiered.GroupOption
	}{
		"L1":        {},
		"DisableL1": {cache: []func(*tiered.Options){func(o *tiered.Options) { o.DisableL1 = true }}},
		"WithoutL1": {group: []tiered.GroupOption{tiered.WithoutL1()}},
	}
	for name, shape := range shapes {
		for _, batch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s %s", name, map[bool]string{false: "GetOrLoad", true: "GetOrLoadMany"}[batch]), func(t *testing.T) {
				prefix := fmt.Sprintf("empty-%s-%v:", name, batch)
				a := rvCache(t, s, prefix, shape.cache...)
				g := tiered.NewGroup[string](a, "g", time.Minute, shape.group...)
				s.Do("SET", redisKey(t, g, "k"), "") // no TTL
				require.NoError(t, a.HearInvalidationsForTest(ctx))
				for range 3 {
					require.NoError(t, <-loadNow(ctx, g, batch, []string{"k"}, "loaded", &rvHeld{entered: make(chan struct{}), release: closed()}))
				}
				v, err := rvInRedis(t, s, prefix, "g", "k")
				require.NoError(t, err, "HOLE: an empty string in Redis is never replaced: every load's SET NX is refused (3 loads, LoadsYielded %d, loader calls %d)", a.Stats().LoadsYielded, a.Stats().Loads)
				require.Equal(t, "loaded", v)
				require.Zero(t, a.Stats().LoadsYielded)
			})
		}
	}
}
