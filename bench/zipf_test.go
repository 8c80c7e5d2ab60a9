package bench

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocache "github.com/go-redis/cache/v9"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/synspirit/tiercache/internal/l1"
	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// The Zipf workload: 100k keys, popularity Zipf(s=1.01), 95% reads and 5% writes, spread
// over two instances of the cache sharing one Redis (operations alternate between them), with
// an L1 of 1% of the key space in bytes on each instance.
//
// Same memory for both libraries. The budget is 1% of the key space × the JSON size of a
// value (zipfL1Budget). tiercache gets Options.L1MaxBytes = budget; it charges each entry its
// encoded size + a fixed overhead (256 B, l1.EntryOverhead: its entry and its share of a slab, and
// ristretto's record of it), so it holds
// fewer entries than budget/value.
// go-redis/cache's TinyLFU is sized in entries: budget ÷ the size of the bytes it stores
// per value (msgpack + s2, smaller than JSON), so it holds more entries than tiercache does.
// The row tiercache-same-entries gives tiercache room for as many entries as the TinyLFU
// holds (entries × (JSON + 256 B)), to separate admission policy from accounting.
// go-redis-csc (go-redis's client-side cache, which stores the raw GET reply, JSON in RESP
// framing) gets ClientSideCacheConfig.MaxMemoryBytes = budget: like tiercache it charges each
// entry its value, its keys and a fixed overhead (96 B + 16 B per Redis key), so it also holds
// fewer entries than budget/value (l1-entries: the mean resident entries per instance at the
// end of a run). It splits the budget over 16 shards of budget/16 each, every shard evicting
// on its own.
//
// Each read also checks the value against the newest write that had completed before the
// read began (values carry a version in Likes): stale-read-ratio is the share of reads that
// returned an older value. go-redis/cache has no cross-instance invalidation, so its other
// instance serves old values until its local TTL (1 min) ends; tiercache's stale reads are
// the reads that land in the instant before an invalidation arrives. go-redis-csc's too, but
// its invalidations wait for the connection that read the key to be used again or drained
// (every 5 ms when idle), the writing instance's own cache included.
const (
	zipfKeys     = 100_000
	zipfS        = 1.01
	zipfWritePct = 5
	// zipfWarmOps is how many untimed operations fill the L1s before the first timed run.
	zipfWarmOps = 20_000
)

// zipfTarget is one contender: two instances on one Redis.
type zipfTarget interface {
	get(ctx context.Context, inst, key int) (Article, error)
	set(ctx context.Context, inst, key int, a Article) error
	// lookups returns the L1 hits and misses of both instances so far.
	lookups() (hits, misses uint64)
}

// versions tracks the newest completed write of every key.
type versions struct {
	next   atomic.Int64
	latest []atomic.Int64
	stale  atomic.Uint64
}

func newVersions() *versions { return &versions{latest: make([]atomic.Int64, zipfKeys)} }

func (v *versions) written(key int, ver int64) {
	for {
		cur := v.latest[key].Load()
		if cur >= ver || v.latest[key].CompareAndSwap(cur, ver) {
			return
		}
	}
}

// zipfOps makes the workload's operation for one goroutine, with a Zipf generator seeded by
// the goroutine's number.
func zipfOps(t zipfTarget, vs *versions) opMaker {
	return func(worker int) func(context.Context) error {
		r := rand.New(rand.NewPCG(uint64(worker)+1, 0x5eed))
		z := rand.NewZipf(r, zipfS, 1, zipfKeys-1)
		n := worker
		return func(ctx context.Context) error {
			key := int(z.Uint64())
			n++
			inst := n & 1
			if r.IntN(100) < zipfWritePct {
				ver := vs.next.Add(1)
				a := sample
				a.ID, a.Likes = key, ver
				if err := t.set(ctx, inst, key, a); err != nil {
					return err
				}
				vs.written(key, ver)
				return nil
			}
			want := vs.latest[key].Load()
			a, err := t.get(ctx, inst, key)
			if err != nil {
				return err
			}
			if a.Likes < want {
				vs.stale.Add(1)
			}
			return nil
		}
	}
}

// zipfProbe reports the L1 hit ratio and the stale-read ratio of a run.
func zipfProbe(t zipfTarget, vs *versions, budget int64) probe {
	return func() func(*testing.B) {
		h0, m0 := t.lookups()
		s0 := vs.stale.Load()
		return func(b *testing.B) {
			h1, m1 := t.lookups()
			reads := (h1 - h0) + (m1 - m0)
			if reads > 0 {
				b.ReportMetric(float64(h1-h0)/float64(reads), "l1-hit-ratio")
				b.ReportMetric(float64(vs.stale.Load()-s0)/float64(reads), "stale-read-ratio")
			}
			b.ReportMetric(float64(budget), "l1-budget-bytes")
		}
	}
}

// warmZipf runs zipfWarmOps operations, untimed, from 32 goroutines.
func warmZipf(b *testing.B, t zipfTarget, vs *versions) {
	b.Helper()
	ops := zipfOps(t, vs)
	const workers = 32
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := range workers {
		wg.Go(func() {
			op := ops(1000 + w)
			for range zipfWarmOps / workers {
				if err := op(context.Background()); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
}

// populate writes value under key(i) for the first n keys, pipelined.
func populate(b *testing.B, rc rueidis.Client, n int, key func(i int) string, value []byte) {
	b.Helper()
	const batch = 1000
	cmds := make(rueidis.Commands, 0, batch)
	for i := 0; i < n; i += batch {
		cmds = cmds[:0]
		for j := i; j < min(i+batch, n); j++ {
			cmds = append(cmds, rc.B().Set().Key(key(j)).Value(rueidis.BinaryString(value)).Ex(longTTL).Build())
		}
		for _, r := range rc.DoMulti(context.Background(), cmds...) {
			if err := r.Error(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// populateTiered stores v under the first n of zipfKeyNames in g, as g would store it: Set
// writes the envelope of key "0", which is then copied into every other key in batches.
func populateTiered(b *testing.B, rc rueidis.Client, g *tiered.Group[Article], n int, v Article) {
	b.Helper()
	ctx := context.Background()
	if err := g.Set(ctx, "0", v); err != nil {
		b.Fatal(err)
	}
	k0, err := g.RedisKey(ctx, "0")
	if err != nil {
		b.Fatal(err)
	}
	env, err := rc.Do(ctx, rc.B().Get().Key(k0).Build()).AsBytes()
	if err != nil {
		b.Fatal(err)
	}
	prefix := k0[:len(k0)-1]
	populate(b, rc, n, func(i int) string { return prefix + zipfKeyNames[i] }, env)
}

var zipfKeyNames = func() []string {
	ks := make([]string, zipfKeys)
	for i := range ks {
		ks[i] = strconv.Itoa(i)
	}
	return ks
}()

type tieredPair struct {
	c [2]*tiered.Cache
	g [2]*tiered.Group[Article]
}

func (p *tieredPair) get(ctx context.Context, inst, key int) (Article, error) {
	return p.g[inst].Get(ctx, zipfKeyNames[key])
}

func (p *tieredPair) set(ctx context.Context, inst, key int, a Article) error {
	return p.g[inst].Set(ctx, zipfKeyNames[key], a)
}

func (p *tieredPair) lookups() (hits, misses uint64) {
	for _, c := range p.c {
		st := c.Stats()
		hits, misses = hits+st.L1Hits, misses+st.L1Misses
	}
	return hits, misses
}

// countingLocal counts the hits and misses of go-redis/cache's local cache, which its own
// Stats do not (they count Redis hits only).
type countingLocal struct {
	gocache.LocalCache
	hits, misses atomic.Uint64
}

func (c *countingLocal) Get(key string) ([]byte, bool) {
	b, ok := c.LocalCache.Get(key)
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return b, ok
}

type goRedisPair struct {
	cd    [2]*gocache.Cache
	local [2]*countingLocal
	keys  []string
}

func (p *goRedisPair) get(ctx context.Context, inst, key int) (Article, error) {
	var a Article
	err := p.cd[inst].Get(ctx, p.keys[key], &a)
	return a, err
}

func (p *goRedisPair) set(ctx context.Context, inst, key int, a Article) error {
	return p.cd[inst].Set(&gocache.Item{Ctx: ctx, Key: p.keys[key], Value: &a, TTL: longTTL})
}

func (p *goRedisPair) lookups() (hits, misses uint64) {
	for _, l := range p.local {
		hits, misses = hits+l.hits.Load(), misses+l.misses.Load()
	}
	return hits, misses
}

// goRedisCSCPair is go-redis's client-side cache on two clients, values stored as JSON.
type goRedisCSCPair struct {
	rdb  [2]*goredis.Client
	keys []string
	// reads counts GETs: a local hit is a read that did not miss first (see lookups).
	reads [2]atomic.Uint64
}

func (p *goRedisCSCPair) get(ctx context.Context, inst, key int) (Article, error) {
	p.reads[inst].Add(1)
	return goRedisGetJSON(ctx, p.rdb[inst], p.keys[key])
}

func (p *goRedisCSCPair) set(ctx context.Context, inst, key int, a Article) error {
	js, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return p.rdb[inst].Set(ctx, p.keys[key], js, longTTL).Err()
}

// lookups counts a read as a hit unless it missed go-redis's cache: CSCStats counts a miss
// that then waited for another goroutine's fetch of the key as a miss and a hit, where
// tiercache and go-redis/cache count one miss.
func (p *goRedisCSCPair) lookups() (hits, misses uint64) {
	for i, rdb := range p.rdb {
		m, r := rdb.CSCStats().Misses, p.reads[i].Load()
		hits, misses = hits+r-min(m, r), misses+m
	}
	return hits, misses
}

// entries reports the mean number of entries go-redis's caches hold at the end of a run.
func (p *goRedisCSCPair) entries() probe {
	return func() func(*testing.B) {
		return func(b *testing.B) {
			n := 0
			for _, rdb := range p.rdb {
				n += rdb.CSCStats().Entries
			}
			b.ReportMetric(float64(n)/float64(len(p.rdb)), "l1-entries")
		}
	}
}

// probes runs several probes around one run.
func probes(ps ...probe) probe {
	return func() func(*testing.B) {
		reports := make([]func(*testing.B), len(ps))
		for i, p := range ps {
			reports[i] = p()
		}
		return func(b *testing.B) {
			for _, r := range reports {
				r(b)
			}
		}
	}
}

// BenchmarkDataZipf is the read-mostly skewed workload described above. Targets: tiercache's
// L1 hit ratio at least go-redis/cache's at the same L1 bytes, and higher throughput.
func BenchmarkDataZipf(b *testing.B) {
	s := redistest.Start(b)
	rc := newRueidisClient(b, s, false)

	base := sample
	base.ID, base.Likes = 0, 0
	js, _ := json.Marshal(base)
	jsonSize := int64(len(js))
	budget := int64(zipfKeys/100) * jsonSize
	grBytes, _ := gocache.New(&gocache.Options{}).Marshal(&base)
	grEntries := int(budget / int64(len(grBytes)))
	sameEntries := int64(grEntries) * (jsonSize + l1.EntryOverhead)

	tieredContender := func(name, group string, l1Bytes int64) {
		b.Run(name, func(b *testing.B) {
			var p tieredPair
			for i := range p.c {
				p.c[i] = newTiered(b, s, func(o *tiered.Options) { o.L1MaxBytes = l1Bytes })
				p.g[i] = tiered.NewGroup[Article](p.c[i], group, longTTL)
			}
			populateTiered(b, rc, p.g[0], zipfKeys, base)
			vs := newVersions()
			warmZipf(b, &p, vs)
			serialAndParallel(b, zipfOps(&p, vs), zipfProbe(&p, vs, l1Bytes))
		})
	}
	tieredContender("tiercache", "zipf", budget)
	tieredContender("tiercache-same-entries", "zipf2", sameEntries)

	b.Run("go-redis-cache", func(b *testing.B) {
		p := goRedisPair{keys: make([]string, zipfKeys)}
		for i := range p.keys {
			p.keys[i] = "gr:zipf:" + zipfKeyNames[i]
		}
		for i := range p.cd {
			p.local[i] = &countingLocal{LocalCache: gocache.NewTinyLFU(grEntries, time.Minute)}
			p.cd[i] = newGoRedisCache(newGoRedisClient(b, s), p.local[i])
		}
		populate(b, rc, zipfKeys, func(i int) string { return p.keys[i] }, grBytes)
		vs := newVersions()
		warmZipf(b, &p, vs)
		serialAndParallel(b, zipfOps(&p, vs), zipfProbe(&p, vs, int64(grEntries)*int64(len(grBytes))))
	})

	b.Run("go-redis-csc", func(b *testing.B) {
		p := goRedisCSCPair{keys: make([]string, zipfKeys)}
		for i := range p.keys {
			p.keys[i] = "grc:zipf:" + zipfKeyNames[i]
		}
		populate(b, rc, zipfKeys, func(i int) string { return p.keys[i] }, js)
		for i := range p.rdb {
			p.rdb[i] = newGoRedisCSC(b, s, goredis.ClientSideCacheConfig{MaxMemoryBytes: budget})
			warmCSC(b, p.rdb[i], p.keys[0])
		}
		vs := newVersions()
		warmZipf(b, &p, vs)
		serialAndParallel(b, zipfOps(&p, vs), probes(zipfProbe(&p, vs, budget), p.entries()))
	})
}
