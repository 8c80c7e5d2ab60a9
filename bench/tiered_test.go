package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	gocache "github.com/go-redis/cache/v9"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// The data-path benchmarks: one benchmark per scenario, one sub-benchmark per contender, each
// run on one goroutine (Serial) and from many (Parallel):
//
//	BenchmarkDataL1Hit          a decoded struct served from process memory
//	BenchmarkDataL2Hit          the same struct read from Redis and decoded
//	BenchmarkDataMissLoad       a key in neither tier: read, load, store
//	BenchmarkDataSet            a write
//	BenchmarkDataDeleteReread   an invalidation followed by the read that rebuilds the entry
//	BenchmarkDataZipf           (zipf_test.go) a read-mostly skewed workload on two instances
//	BenchmarkDataZipfBusy       (busy_test.go) a Zipf reader while another instance writes keys it never reads
//	BenchmarkDataScale          (scale_test.go) 1, 4 and 16 instances on one Redis: its CPU, the invalidation fan-out
//	BenchmarkDataInvalidation   (invalidation_test.go) how soon another instance stops serving an old value
//	BenchmarkDataBatch          (batch_test.go) a page of 100 keys at 100, 90, 50 and 0% L1 hits
//	BenchmarkDataL1HitTagged    (tags_test.go) an L1 hit of a value with 0, 1 and 3 tags
//	BenchmarkL1Size             (size_test.go) heap, GC and hit latency with 10k, 100k and 1M entries held
//
// The contenders are what a Go service would use instead: go-redis/cache v9 with and without
// its local TinyLFU (msgpack + s2, its defaults), go-redis v9's own client-side cache
// (go-redis-csc: the raw GET reply cached in process, CLIENT TRACKING on every pooled
// connection, decoded with encoding/json on every read), rueidis by hand (GET +
// encoding/json, and DoCache, rueidis's own client-side cache), and, as floors for an
// in-process hit, ristretto and sync.Map holding the decoded struct (BenchmarkDataL1Hit has
// each floor twice, labelled: -value holding the struct itself, which every read copies, and
// -pointer holding a *Article, as tiercache's -pointer row does).

// Article is a ~300-byte JSON value, the size of a typical list entry.
type Article struct {
	ID        int       `json:"id"`
	Title     string    `json:"title"`
	Author    string    `json:"author"`
	Summary   string    `json:"summary"`
	Tags      []string  `json:"tags"`
	Likes     int64     `json:"likes"`
	Published time.Time `json:"published"`
}

var sample = Article{
	ID: 123, Title: "Two tiers, one truth: caching across instances", Author: "synspirit",
	Summary: "How an in-process L1 in front of Redis stays coherent with server-assisted client-side caching and a pub/sub bus.",
	Tags:    []string{"go", "redis", "cache"}, Likes: 500, Published: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC),
}

const (
	// dataParallelism multiplies GOMAXPROCS into the goroutines of the Parallel variants: a
	// service serves many requests at once, most of them waiting on Redis.
	dataParallelism = 16
	// longTTL keeps benchmark entries alive for the whole run in every tier.
	longTTL = time.Hour
	// tinyLFUEntries sizes go-redis/cache's local cache where its size does not matter.
	tinyLFUEntries = 10_000
)

var errWrongValue = errors.New("bench: wrong value")

func loadSample(context.Context) (Article, error) { return sample, nil }

func checkArticle(a Article, err error) error {
	if err == nil && a.ID != sample.ID {
		return fmt.Errorf("%w: id %d", errWrongValue, a.ID)
	}
	return err
}

// checkArticlePointer is checkArticle for a *Article: it reads one field, copying nothing.
func checkArticlePointer(a *Article, err error) error {
	if err == nil && (a == nil || a.ID != sample.ID) {
		return fmt.Errorf("%w: %v", errWrongValue, a)
	}
	return err
}

// newTiered starts a tiered.Cache on s (key prefix "bench:"), closed by b.Cleanup.
func newTiered(b testing.TB, s *redistest.Server, mod ...func(*tiered.Options)) *tiered.Cache {
	b.Helper()
	o := tiered.Options{RedisURL: s.URL(), KeyPrefix: "bench:"}
	for _, f := range mod {
		f(&o)
	}
	c, err := tiered.New(context.Background(), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// newRueidisClient returns a rueidis client on s, with rueidis's client-side cache
// (DoCache) only if clientCache.
func newRueidisClient(b testing.TB, s *redistest.Server, clientCache bool) rueidis.Client {
	b.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.Addr()}, DisableCache: !clientCache})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}

func newGoRedisClient(b testing.TB, s *redistest.Server) *goredis.Client {
	b.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr()})
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// newGoRedisCSC is a go-redis client with go-redis's own client-side cache (RESP3, the
// built-in LocalCache sized by cfg). It caches the raw reply of GET: a hit costs no round
// trip, and the caller decodes it. Every pooled connection runs CLIENT TRACKING ON (not
// BCAST: Redis reports only keys that connection read); an invalidation is applied when its
// connection is next used, or by the background drainer (every cfg.DrainInterval, 5 ms by
// default) when the connection is idle in the pool.
func newGoRedisCSC(b testing.TB, s *redistest.Server, cfg goredis.ClientSideCacheConfig) *goredis.Client {
	b.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr(), Protocol: 3, ClientSideCacheConfig: &cfg})
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// goRedisGetJSON is a read through go-redis: GET, then encoding/json.
func goRedisGetJSON(ctx context.Context, rdb *goredis.Client, key string) (Article, error) {
	bs, err := rdb.Get(ctx, key).Bytes()
	var a Article
	if err == nil {
		err = json.Unmarshal(bs, &a)
	}
	return a, err
}

// warmCSC reads key until go-redis serves it from its client-side cache: it fails the
// benchmark if go-redis did not turn its cache on.
func warmCSC(b testing.TB, rdb *goredis.Client, key string) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		before := rdb.CSCStats().Hits
		if err := rdb.Get(context.Background(), key).Err(); err != nil {
			b.Fatal(err)
		}
		if rdb.CSCStats().Hits > before {
			return
		}
		time.Sleep(100 * time.Microsecond)
	}
	b.Fatal("go-redis: GET never served from its client-side cache")
}

// cscHitRatio reports the share of go-redis client-side cache lookups that hit during a run
// (Client.CSCStats). A read that misses and then waits for another goroutine's fetch of the
// same key counts one miss and one hit there; where that can happen (Zipf), the ratio is
// taken over reads instead (see goRedisCSCPair).
func cscHitRatio(rdb *goredis.Client) probe {
	return func() func(*testing.B) {
		st0 := rdb.CSCStats()
		return func(b *testing.B) {
			st1 := rdb.CSCStats()
			h, m := st1.Hits-st0.Hits, st1.Misses-st0.Misses
			if h+m > 0 {
				b.ReportMetric(float64(h)/float64(h+m), "l1-hit-ratio")
			}
		}
	}
}

// newGoRedisCache is go-redis/cache on rdb in front of local (its README's set-up uses
// NewTinyLFU(n, time.Minute)), or on Redis only when local is nil.
func newGoRedisCache(rdb *goredis.Client, local gocache.LocalCache) *gocache.Cache {
	return gocache.New(&gocache.Options{Redis: rdb, LocalCache: local})
}

// warmL1 reads key until tiercache serves it from L1 (ristretto applies fills lazily).
func warmL1[T any](b testing.TB, c *tiered.Cache, g *tiered.Group[T], key string) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		before := c.Stats().L1Hits
		if _, err := g.Get(context.Background(), key); err != nil {
			b.Fatal(err)
		}
		if c.Stats().L1Hits > before {
			return
		}
		time.Sleep(100 * time.Microsecond)
	}
	b.Fatal("value never reached L1")
}

// An opMaker makes the operation one goroutine runs; each goroutine of a Parallel run gets
// its own, so an operation may keep per-goroutine state without locks.
type opMaker func(worker int) func(ctx context.Context) error

// same is an opMaker for a stateless operation.
func same(op func(ctx context.Context) error) opMaker {
	return func(int) func(context.Context) error { return op }
}

// A probe is called before a timed run; what it returns is called after it, to report
// metrics of the run (b.ReportMetric).
type probe func() func(b *testing.B)

// serialAndParallel runs ops as sub-benchmarks Serial (one goroutine) and Parallel
// (dataParallelism×GOMAXPROCS goroutines). probe may be nil.
func serialAndParallel(b *testing.B, ops opMaker, pr probe) {
	ctx := context.Background()
	b.Run("Serial", func(b *testing.B) {
		b.ReportAllocs()
		op := ops(0)
		var report func(*testing.B)
		if pr != nil {
			report = pr()
		}
		for b.Loop() {
			if err := op(ctx); err != nil {
				b.Fatal(err)
			}
		}
		if report != nil {
			report(b)
		}
	})
	b.Run("Parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(dataParallelism)
		var worker atomic.Int64
		var report func(*testing.B)
		if pr != nil {
			report = pr()
		}
		b.RunParallel(func(pb *testing.PB) {
			op := ops(int(worker.Add(1)))
			for pb.Next() {
				if err := op(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
		if report != nil {
			report(b)
		}
	})
}

// l1HitRatio reports the share of tiercache lookups served from L1 during a run: it proves
// a "hit" benchmark measures what it says.
func l1HitRatio(cs ...*tiered.Cache) probe {
	return func() func(*testing.B) {
		var h0, m0 uint64
		for _, c := range cs {
			st := c.Stats()
			h0, m0 = h0+st.L1Hits, m0+st.L1Misses
		}
		return func(b *testing.B) {
			var h1, m1 uint64
			for _, c := range cs {
				st := c.Stats()
				h1, m1 = h1+st.L1Hits, m1+st.L1Misses
			}
			if n := (h1 - h0) + (m1 - m0); n > 0 {
				b.ReportMetric(float64(h1-h0)/float64(n), "l1-hit-ratio")
			}
		}
	}
}

// redisCPUPerOp reports redis-server's CPU time per operation during a run (INFO cpu, sys +
// user, read through a client of its own): what a contender costs Redis, which shares the
// machine's CPUs with the benchmark. It is how the Redis side of a gap shows: a command more
// per read, or the invalidation Redis pushes to every listening instance for each write.
func redisCPUPerOp(b *testing.B, s *redistest.Server) probe {
	rc := newRueidisClient(b, s, false)
	return func() func(*testing.B) {
		cpu0, err0 := redisCPU(rc)
		return func(b *testing.B) {
			cpu1, err1 := redisCPU(rc)
			if err := errors.Join(err0, err1); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric((cpu1-cpu0)*1e6/float64(b.N), "redis-cpu-us/op")
		}
	}
}

// BenchmarkDataL1Hit reads one ~300-byte struct that every contender holds in process
// memory. A Group[Article] returns the struct by value, which copies its 112 bytes on every
// hit (tiercache-Get), as do the floors ristretto-Get-value and sync.Map-Load-value, which hold
// the struct itself; tiercache-Get-pointer is a Group[*Article], whose hit returns the
// pointer, against the floors ristretto-Get-pointer and sync.Map-Load-pointer, which hold a
// *Article. Compare -pointer rows with -pointer rows. Targets: tiercache ≥ 15× faster than
// go-redis/cache's local hit, 0 allocs/op (both tiercache-Get rows), and tiercache-Get-pointer
// at most 1× ristretto-Get-pointer and at most 2× (Serial) and 2.5× (Parallel)
// sync.Map-Load-pointer.
func BenchmarkDataL1Hit(b *testing.B) {
	s := redistest.Start(b)
	ctx := context.Background()
	const key = "123"

	b.Run("tiercache-Get", func(b *testing.B) {
		c := newTiered(b, s)
		g := tiered.NewGroup[Article](c, "data:articles", longTTL)
		if err := g.Set(ctx, key, sample); err != nil {
			b.Fatal(err)
		}
		warmL1(b, c, g, key)
		serialAndParallel(b, same(func(ctx context.Context) error { return checkArticle(g.Get(ctx, key)) }), l1HitRatio(c))
	})
	b.Run("tiercache-Get-pointer", func(b *testing.B) {
		c := newTiered(b, s)
		g := tiered.NewGroup[*Article](c, "data:articles", longTTL)
		if err := g.Set(ctx, key, &sample); err != nil {
			b.Fatal(err)
		}
		warmL1(b, c, g, key)
		serialAndParallel(b, same(func(ctx context.Context) error { return checkArticlePointer(g.Get(ctx, key)) }), l1HitRatio(c))
	})
	b.Run("tiercache-GetOrLoad", func(b *testing.B) {
		c := newTiered(b, s)
		g := tiered.NewGroup[Article](c, "data:articles", longTTL)
		if err := g.Set(ctx, key, sample); err != nil {
			b.Fatal(err)
		}
		warmL1(b, c, g, key)
		serialAndParallel(b, same(func(ctx context.Context) error { return checkArticle(g.GetOrLoad(ctx, key, loadSample)) }), l1HitRatio(c))
	})

	goRedisLocal := func(b *testing.B) *gocache.Cache {
		local := gocache.NewTinyLFU(tinyLFUEntries, time.Minute)
		cd := newGoRedisCache(newGoRedisClient(b, s), local)
		if err := cd.Set(&gocache.Item{Ctx: ctx, Key: "gr:articles:123", Value: &sample, TTL: longTTL}); err != nil {
			b.Fatal(err)
		}
		if _, ok := local.Get("gr:articles:123"); !ok {
			b.Fatal("go-redis/cache: value not in its local cache")
		}
		return cd
	}
	b.Run("go-redis-cache-Get", func(b *testing.B) {
		cd := goRedisLocal(b)
		serialAndParallel(b, same(func(ctx context.Context) error {
			var a Article
			return checkArticle(a, cd.Get(ctx, "gr:articles:123", &a))
		}), redisCPUPerOp(b, s))
	})
	b.Run("go-redis-cache-Once", func(b *testing.B) {
		cd := goRedisLocal(b)
		serialAndParallel(b, same(func(ctx context.Context) error {
			var a Article
			err := cd.Once(&gocache.Item{Ctx: ctx, Key: "gr:articles:123", Value: &a, TTL: longTTL,
				Do: func(*gocache.Item) (any, error) { return &sample, nil }})
			return checkArticle(a, err)
		}), nil)
	})

	b.Run("rueidis-DoCache+json", func(b *testing.B) { benchDoCache(b, s) })
	// go-redis's client-side cache holds the raw GET reply: every hit is a GET through
	// go-redis's command path, answered from process memory, then encoding/json.
	b.Run("go-redis-csc", func(b *testing.B) {
		rdb := newGoRedisCSC(b, s, goredis.ClientSideCacheConfig{MaxEntries: tinyLFUEntries})
		js, _ := json.Marshal(sample)
		if err := rdb.Set(ctx, "grc:articles:123", js, longTTL).Err(); err != nil {
			b.Fatal(err)
		}
		warmCSC(b, rdb, "grc:articles:123")
		serialAndParallel(b, same(func(ctx context.Context) error {
			return checkArticle(goRedisGetJSON(ctx, rdb, "grc:articles:123"))
		}), cscHitRatio(rdb))
	})

	b.Run("ristretto-Get-value", func(b *testing.B) { benchRistretto(b, sample, 0, checkArticle) })
	b.Run("ristretto-Get-pointer", func(b *testing.B) { benchRistretto(b, &sample, 0, checkArticlePointer) })
	// ristretto-GetTTL holds the struct (by value) with a TTL, as a cache whose L1 entries must
	// not outlive their Redis entries would: ristretto then reads the clock on every Get.
	b.Run("ristretto-GetTTL", func(b *testing.B) { benchRistretto(b, sample, longTTL, checkArticle) })
	b.Run("sync.Map-Load-value", func(b *testing.B) { benchSyncMap(b, sample, checkArticle) })
	b.Run("sync.Map-Load-pointer", func(b *testing.B) { benchSyncMap(b, &sample, checkArticlePointer) })
}

// benchSyncMap is the sync.Map floor of an L1 hit: Load of v (the struct, or a pointer to it)
// by its full Redis key, then the type assertion and check a caller makes.
func benchSyncMap[V any](b *testing.B, v V, check func(V, error) error) {
	var m sync.Map
	const mkey = "bench:data:articles:123"
	m.Store(mkey, v)
	serialAndParallel(b, same(func(context.Context) error {
		got, ok := m.Load(mkey)
		if !ok {
			return errors.New("sync.Map: miss")
		}
		return check(got.(V), nil)
	}), nil)
}

// BenchmarkDataL2Hit reads the struct from Redis and decodes it, with no in-process tier.
// Targets: tiercache at most 1.1× rueidis GET + json (rueidis-GET+json) serially and 1.05× in
// parallel. rueidis-DoCache is not an L2 read at all after its first call: it
// is served from rueidis's client-side cache; it is here because it is what a rueidis user
// would reach for.
//
// go-redis-csc-localmiss is go-redis's client-side cache made to miss on every read: it holds
// one entry, and each goroutine reads two keys of its own in turn, so each GET finds the other
// key in the cache, goes to Redis, and evicts it to store its own reply. That is what a
// go-redis-csc read costs when the value is not in process memory: the round trip plus the
// cache's reservation, copy and eviction (tiercache's row has no L1 to fill; its L1-miss
// path would add a fill too). l1-hit-ratio (from CSCStats) shows it misses.
func BenchmarkDataL2Hit(b *testing.B) {
	s := redistest.Start(b)
	ctx := context.Background()
	js, _ := json.Marshal(sample)

	b.Run("tiercache", func(b *testing.B) {
		c := newTiered(b, s, func(o *tiered.Options) { o.DisableL1 = true })
		g := tiered.NewGroup[Article](c, "data:articles", longTTL)
		if err := g.Set(ctx, "123", sample); err != nil {
			b.Fatal(err)
		}
		serialAndParallel(b, same(func(ctx context.Context) error { return checkArticle(g.Get(ctx, "123")) }), costs(b, s))
	})
	b.Run("go-redis-cache", func(b *testing.B) {
		cd := newGoRedisCache(newGoRedisClient(b, s), nil)
		if err := cd.Set(&gocache.Item{Ctx: ctx, Key: "gr:articles:123", Value: &sample, TTL: longTTL}); err != nil {
			b.Fatal(err)
		}
		serialAndParallel(b, same(func(ctx context.Context) error {
			var a Article
			return checkArticle(a, cd.Get(ctx, "gr:articles:123", &a))
		}), costs(b, s))
	})
	b.Run("rueidis-GET+json", func(b *testing.B) {
		rc := newRueidisClient(b, s, false)
		if err := rc.Do(ctx, rc.B().Set().Key("ru:articles:123").Value(rueidis.BinaryString(js)).Build()).Error(); err != nil {
			b.Fatal(err)
		}
		serialAndParallel(b, same(func(ctx context.Context) error {
			bs, err := rc.Do(ctx, rc.B().Get().Key("ru:articles:123").Build()).AsBytes()
			var a Article
			if err == nil {
				err = json.Unmarshal(bs, &a)
			}
			return checkArticle(a, err)
		}), costs(b, s))
	})
	b.Run("go-redis-csc-localmiss", func(b *testing.B) {
		rdb := newGoRedisCSC(b, s, goredis.ClientSideCacheConfig{MaxEntries: 1})
		// Workers are 0 (Serial) and 1..dataParallelism×GOMAXPROCS (Parallel).
		keys := make([][2]string, dataParallelism*runtime.GOMAXPROCS(0)+1)
		for w := range keys {
			for i := range keys[w] {
				keys[w][i] = "grc:l2:" + strconv.Itoa(w) + ":" + strconv.Itoa(i)
				if err := rdb.Set(ctx, keys[w][i], js, longTTL).Err(); err != nil {
					b.Fatal(err)
				}
			}
		}
		serialAndParallel(b, func(w int) func(context.Context) error {
			mine, n := keys[w], 0
			return func(ctx context.Context) error {
				n++
				return checkArticle(goRedisGetJSON(ctx, rdb, mine[n&1]))
			}
		}, probes(cscHitRatio(rdb), costs(b, s)))
	})
	// After its first read, DoCache answers from rueidis's own client-side cache: this is not
	// an L2 read, and is labelled so.
	b.Run("rueidis-DoCache+json-localhit", func(b *testing.B) { benchDoCache(b, s) })
}

// keySeq hands out keys never used before, so that every iteration of a miss benchmark misses.
var keySeq atomic.Uint64

func freshKey() string { return strconv.FormatUint(keySeq.Add(1), 10) }

// withAndWithoutL1 are the two tiercache contenders of the miss and write benchmarks: a
// cache as made by default, and one with DisableL1.
var withAndWithoutL1 = []struct {
	name string
	mod  func(*tiered.Options)
}{
	{"tiercache", func(*tiered.Options) {}},
	{"tiercache-without-L1", func(o *tiered.Options) { o.DisableL1 = true }},
}

// BenchmarkDataMissLoad reads a key held by neither tier: the read misses, the loader
// (returning a constant) runs, and the value is stored. Target: tiercache at most 1.2× the
// same by hand with rueidis (rueidis-GET+SET+json), Serial and Parallel.
//
// tiercache-without-L1 is the same GetOrLoad on a cache with DisableL1: no PTTL beside the
// read and no L1 fill (the loaded value kept in L1 under a compare-and-swap of its stripe).
// Neither row makes Redis push the write back to this instance: with L1 the write goes
// through the listener, which tracks with NOLOOP; without, the listener does not track the
// group. The difference between the two rows is what coherence costs a miss; redis-cpu-us/op
// shows Redis's share of it.
func BenchmarkDataMissLoad(b *testing.B) {
	s := redistest.Start(b)
	for _, c := range withAndWithoutL1 {
		b.Run(c.name, func(b *testing.B) {
			g := tiered.NewGroup[Article](newTiered(b, s, c.mod), "data:miss", time.Minute)
			serialAndParallel(b, same(func(ctx context.Context) error {
				return checkArticle(g.GetOrLoad(ctx, freshKey(), loadSample))
			}), costs(b, s))
		})
	}
	b.Run("go-redis-cache", func(b *testing.B) {
		cd := newGoRedisCache(newGoRedisClient(b, s), gocache.NewTinyLFU(tinyLFUEntries, time.Minute))
		serialAndParallel(b, same(func(ctx context.Context) error {
			var a Article
			err := cd.Once(&gocache.Item{Ctx: ctx, Key: "gr:miss:" + freshKey(), Value: &a, TTL: time.Minute,
				Do: func(*gocache.Item) (any, error) { return &sample, nil }})
			return checkArticle(a, err)
		}), redisCPUPerOp(b, s))
	})
	b.Run("rueidis-GET+SET+json", func(b *testing.B) {
		rc := newRueidisClient(b, s, false)
		serialAndParallel(b, same(func(ctx context.Context) error {
			return rueidisGetOrLoad(ctx, rc, "ru:miss:"+freshKey())
		}), costs(b, s))
	})
}

// rueidisGetOrLoad is a cache-aside read written by hand: GET, and on a miss load, encode
// and SET.
func rueidisGetOrLoad(ctx context.Context, rc rueidis.Client, key string) error {
	bs, err := rc.Do(ctx, rc.B().Get().Key(key).Build()).AsBytes()
	var a Article
	switch {
	case err == nil:
		return checkArticle(a, json.Unmarshal(bs, &a))
	case !rueidis.IsRedisNil(err):
		return err
	}
	if a, err = loadSample(ctx); err != nil {
		return err
	}
	js, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return rc.Do(ctx, rc.B().Set().Key(key).Value(rueidis.BinaryString(js)).Ex(time.Minute).Build()).Error()
}

// BenchmarkDataSet writes the struct; each goroutine writes its own key. Target: tiercache at
// most 1.05× encoding/json + a rueidis SET (rueidis-SET+json), Serial and Parallel.
// tiercache-without-L1 writes through a cache with DisableL1. Redis pushes the write back to
// neither (see BenchmarkDataMissLoad): tiercache writes through its NOLOOP listener, and on
// one connection per node rather than the data client's.
func BenchmarkDataSet(b *testing.B) {
	s := redistest.Start(b)
	for _, c := range withAndWithoutL1 {
		b.Run(c.name, func(b *testing.B) {
			g := tiered.NewGroup[Article](newTiered(b, s, c.mod), "data:set", longTTL)
			serialAndParallel(b, func(w int) func(context.Context) error {
				key := strconv.Itoa(w)
				return func(ctx context.Context) error { return g.Set(ctx, key, sample) }
			}, costs(b, s))
		})
	}
	b.Run("go-redis-cache", func(b *testing.B) {
		cd := newGoRedisCache(newGoRedisClient(b, s), gocache.NewTinyLFU(tinyLFUEntries, time.Minute))
		serialAndParallel(b, func(w int) func(context.Context) error {
			key := "gr:set:" + strconv.Itoa(w)
			return func(ctx context.Context) error {
				return cd.Set(&gocache.Item{Ctx: ctx, Key: key, Value: &sample, TTL: longTTL})
			}
		}, costs(b, s))
	})
	b.Run("rueidis-SET+json", func(b *testing.B) {
		rc := newRueidisClient(b, s, false)
		serialAndParallel(b, func(w int) func(context.Context) error {
			key := "ru:set:" + strconv.Itoa(w)
			return func(ctx context.Context) error {
				js, err := json.Marshal(sample)
				if err != nil {
					return err
				}
				return rc.Do(ctx, rc.B().Set().Key(key).Value(rueidis.BinaryString(js)).Ex(longTTL).Build()).Error()
			}
		}, costs(b, s))
	})
}

// BenchmarkDataDeleteReread invalidates a key and reads it again, which reloads it: the
// cost of one invalidation as the application sees it. Each goroutine has its own key.
func BenchmarkDataDeleteReread(b *testing.B) {
	s := redistest.Start(b)
	b.Run("tiercache", func(b *testing.B) {
		g := tiered.NewGroup[Article](newTiered(b, s), "data:del", longTTL)
		serialAndParallel(b, func(w int) func(context.Context) error {
			key := strconv.Itoa(w)
			return func(ctx context.Context) error {
				if err := g.Delete(ctx, key); err != nil {
					return err
				}
				return checkArticle(g.GetOrLoad(ctx, key, loadSample))
			}
		}, nil)
	})
	b.Run("go-redis-cache", func(b *testing.B) {
		cd := newGoRedisCache(newGoRedisClient(b, s), gocache.NewTinyLFU(tinyLFUEntries, time.Minute))
		serialAndParallel(b, func(w int) func(context.Context) error {
			key := "gr:del:" + strconv.Itoa(w)
			return func(ctx context.Context) error {
				if err := cd.Delete(ctx, key); err != nil {
					return err
				}
				var a Article
				err := cd.Once(&gocache.Item{Ctx: ctx, Key: key, Value: &a, TTL: longTTL,
					Do: func(*gocache.Item) (any, error) { return &sample, nil }})
				return checkArticle(a, err)
			}
		}, nil)
	})
	b.Run("rueidis-DEL+GET+SET+json", func(b *testing.B) {
		rc := newRueidisClient(b, s, false)
		serialAndParallel(b, func(w int) func(context.Context) error {
			key := "ru:del:" + strconv.Itoa(w)
			return func(ctx context.Context) error {
				if err := rc.Do(ctx, rc.B().Del().Key(key).Build()).Error(); err != nil {
					return err
				}
				return rueidisGetOrLoad(ctx, rc, key)
			}
		}, nil)
	})
}

// benchRistretto is the raw ristretto floor of an L1 hit: Get of v (the struct, or a pointer
// to it) by its string key, stored with ttl (0: none).
func benchRistretto[V any](b *testing.B, v V, ttl time.Duration, check func(V, error) error) {
	rc, err := ristretto.NewCache(&ristretto.Config[string, V]{NumCounters: 1e5, MaxCost: 64 << 20, BufferItems: 64})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(rc.Close)
	const rkey = "bench:data:articles:123"
	rc.SetWithTTL(rkey, v, 300, ttl)
	rc.Wait()
	serialAndParallel(b, same(func(context.Context) error {
		a, ok := rc.Get(rkey)
		if !ok {
			return errors.New("ristretto: miss")
		}
		return check(a, nil)
	}), nil)
}

// benchDoCache reads the struct through rueidis's client-side cache (DoCache), after making
// sure it is served from that cache.
func benchDoCache(b *testing.B, s *redistest.Server) {
	ctx := context.Background()
	rc := newRueidisClient(b, s, true)
	js, _ := json.Marshal(sample)
	if err := rc.Do(ctx, rc.B().Set().Key("ru:articles:123").Value(rueidis.BinaryString(js)).Build()).Error(); err != nil {
		b.Fatal(err)
	}
	get := func() rueidis.Cacheable { return rc.B().Get().Key("ru:articles:123").Cache() }
	for i := 0; !rc.DoCache(ctx, get(), longTTL).IsCacheHit(); i++ {
		if i == 1000 {
			b.Fatal("rueidis: DoCache never hit its client-side cache")
		}
	}
	serialAndParallel(b, same(func(ctx context.Context) error {
		bs, err := rc.DoCache(ctx, get(), longTTL).AsBytes()
		var a Article
		if err == nil {
			err = json.Unmarshal(bs, &a)
		}
		return checkArticle(a, err)
	}), nil)
}

// BenchmarkNewGroup is the cost of making a group: a new name, and a name already in use
// (a group made per request). Both are O(1): b.N groups cost b.N times one.
func BenchmarkNewGroup(b *testing.B) {
	s := redistest.Start(b)
	b.Run("distinct-names", func(b *testing.B) {
		c := newTiered(b, s)
		names := make([]string, b.N)
		for i := range names {
			names[i] = "g" + strconv.Itoa(i)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if err := tiered.NewGroup[Article](c, names[i], time.Minute).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("same-name", func(b *testing.B) {
		c := newTiered(b, s)
		b.ReportAllocs()
		for range b.N {
			if err := tiered.NewGroup[Article](c, "articles", time.Minute).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// costs are the probes of the benchmarks that go to Redis: the CPU time of redis-server
// (redis-cpu-us/op) and of this process (client-cpu-us/op) per operation, and this process's
// write syscalls per operation (writes/op: how well the client's pipelining batches).
func costs(b *testing.B, s *redistest.Server) probe {
	return probes(redisCPUPerOp(b, s), clientCPUPerOp(), sysWritesPerOp())
}

// sysWritesPerOp reports the process's write syscalls per operation (Linux, /proc/self/io).
func sysWritesPerOp() probe {
	read := func() float64 {
		bs, err := os.ReadFile("/proc/self/io")
		if err != nil {
			return 0
		}
		for _, l := range strings.Split(string(bs), "\n") {
			if v, ok := strings.CutPrefix(l, "syscw: "); ok {
				n, _ := strconv.ParseFloat(v, 64)
				return n
			}
		}
		return 0
	}
	return func() func(*testing.B) {
		w0 := read()
		return func(b *testing.B) { b.ReportMetric((read()-w0)/float64(b.N), "writes/op") }
	}
}

// clientCPUPerOp reports this process's CPU time (user + system) per operation.
func clientCPUPerOp() probe {
	read := func() float64 {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e3
	}
	return func() func(*testing.B) {
		c0 := read()
		return func(b *testing.B) { b.ReportMetric((read()-c0)/float64(b.N), "client-cpu-us/op") }
	}
}
