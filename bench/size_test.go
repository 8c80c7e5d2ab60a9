package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"
	gocache "github.com/go-redis/cache/v9"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// BenchmarkL1Size is what holding many entries in process memory costs: 10k, 100k and 1M
// entries of a small struct (Small: an int and a 19-byte string, every value distinct), in
// each contender (sub-benchmarks entries=<n>/<contender>):
//
//	tiercache       Group[*Small], L1MaxBytes sizeL1BytesPerEntry × n (room for all),
//	                ExactL1Stats; the values go in with Set and reach L1 by one Get each
//	ristretto       a raw ristretto.Cache[string, *Small] (NumCounters 10 × n, MaxCost 2 × n at
//	                cost 1 each), Set then Wait
//	ristretto-read-through
//	                the same raw ristretto, filled as a read-through cache in front of Redis
//	                would be: each value's JSON (in Redis beforehand) read by a rueidis GET,
//	                decoded and Set, from sizeFillWorkers goroutines. It holds the same values;
//	                only their places in the heap differ (see openRistrettoReadThroughSize)
//	go-redis-csc    go-redis v9's client-side cache (MaxEntries 2 × n: it splits the limit over
//	                16 shards that each enforce their share; ClientSideCacheCoalesceMisses, see
//	                Cost), holding the raw GET reply of each value's JSON (written to Redis
//	                beforehand, pipelined), filled by one GET each; a hit decodes the JSON
//	go-redis-cache  go-redis/cache's local tier, gocache.NewTinyLFU(n, time.Hour), holding its
//	                msgpack encoding, filled by Cache.Set without a Redis (so that a local
//	                miss is an error, not a round trip); a hit decodes the msgpack
//
// Every number is measured once per sub-benchmark, outside b.Loop, whatever -benchtime:
//
//	heap-B/entry          (live heap with the n entries − live heap of the same contender set up
//	                      and empty) ÷ n. Live heap: runtime.GC twice, then MemStats.HeapAlloc.
//	                      "Set up" is made, connected (every connection a fill uses opened:
//	                      tiercache's pipelined rueidis connections, go-redis's pool) and, for
//	                      tiercache and go-redis-csc, a few warm-up keys read; the benchmark's
//	                      own lookup keys (one slice per size) are in both measurements. The
//	                      fill passes each contender fresh copies of the keys, so a contender
//	                      that keeps a key pays for it
//	value-B/entry         what one value needs by itself, in the form the contender keeps it
//	                      (valueBytes): *Small is the struct's size class plus its string's;
//	                      JSON and msgpack bytes are their length's size class
//	beyond-value-B/entry  heap-B/entry − value-B/entry: what the contender adds to each value
//	                      (its copy of the key, its entry, its index and admission structures)
//	setup-B/entry         (live heap set up and empty − live heap before the contender was made)
//	                      ÷ n: what it allocates before holding anything, connection buffers
//	                      (tiercache, go-redis-csc) and structures sized by capacity (the
//	                      admission counters of tiercache's L1 and of ristretto; TinyLFU's map,
//	                      made for n entries, and its sketch), spread over the n entries
//	gc-cpu-fraction       under a steady garbage load (startGarbage: sizeGarbageRate of
//	                      short-lived []byte from one goroutine) with the n entries held: the
//	                      GC's CPU time (runtime/metrics /cpu/classes/gc/total: pauses, assists,
//	                      dedicated and idle-priority marking) ÷ the CPU time available
//	                      (/cpu/classes/total: GOMAXPROCS × wall time), from the end of a forced
//	                      GC to the end of the last cycle completed in the window (the runtime
//	                      updates these metrics only when a cycle ends, so whole cycles are
//	                      counted and nothing else): at least sizeGCWindow and sizeGCMinCycles
//	                      cycles, at most sizeGCMaxWindow. Idle-priority marking is counted
//	                      (MemStats.GCCPUFraction leaves it out): in this otherwise idle process
//	                      the GC does most of its marking on idle CPUs, which a busy service does
//	                      not have; the work is the same, and leaving it out measured the
//	                      scheduler's luck more than the heap
//	gc-cycles             the cycles that fraction covers
//	garbage-MB/s          the load's achieved rate over that window (MB = 2^20 bytes)
//	hit-p99-ns            with the load still running, sizeHitSamples hits of random held keys
//	                      timed in batches of sizeHitBatch (time.Now around each batch, divided
//	                      by the batch: a single hit is shorter than the clock's cost and
//	                      granularity): the 99th percentile of the per-batch means. A batch's
//	                      mean hides one slow hit among 64; it does show a GC pause or assist
//	                      that lands in the batch
//	l1-hit-ratio          local hits ÷ lookups during the timed hits (tiercache: Stats, exact;
//	                      go-redis-csc: CSCStats); ristretto and go-redis/cache have nothing
//	                      behind their local tier, so any miss fails the benchmark
//
// ns/op, B/op and allocs/op are b.Loop's: one hit of a random held key, without the load.
//
// Cost. Filling tiercache, ristretto-read-through and go-redis-csc takes Redis round trips,
// from sizeFillWorkers goroutines: 2 per entry for tiercache (Set, then the Get that brings the
// value to L1; rueidis pipelines the concurrent calls) and 1 for the other two (go-redis-csc
// with ClientSideCacheCoalesceMisses, which streams concurrent misses down one connection
// instead of one command per pooled connection: 15 s for 1M entries rather than 41 s; it
// changes nothing of a hit). On the 2-CPU machine, where redis-server shares the CPUs, both
// CPUs are busy for ~20 s filling tiercache's 1M entries (32 goroutines took 31 s), and the
// whole benchmark takes ~2.5 min. When -benchtime is a count of iterations (CI's -benchtime
// 100x, which runs every benchmark once so that none rots; its numbers are not the published
// ones) the 1M size skips the contenders filled through Redis (sizeSkipSlowFill), and the
// benchmark takes ~40 s. Their set-up and measurement are the same code at 10k and 100k, which
// still run. A -benchtime given as a duration (the report's) measures everything.
func BenchmarkL1Size(b *testing.B) {
	s := redistest.Start(b)
	rc := newRueidisClient(b, s, false)
	for _, size := range l1Sizes {
		b.Run("entries="+size.name, func(b *testing.B) {
			keys := sizeKeys(size.n)
			for _, c := range sizeContenders {
				b.Run(c.name, func(b *testing.B) {
					if c.viaRedis && size.n >= sizeSkipSlowFill && benchtimeIsCount() {
						b.Skipf("filled through Redis: skipped at %s entries when -benchtime is a count (see BenchmarkL1Size)", size.name)
					}
					// Empty Redis once the contender is closed (cleanups run last-in first-out).
					b.Cleanup(func() { _ = s.Do("FLUSHALL", "ASYNC").Error() })
					benchL1Size(b, s, rc, keys, c.open)
				})
			}
		})
	}
}

var l1Sizes = []struct {
	name string
	n    int
}{{"10k", 10_000}, {"100k", 100_000}, {"1M", 1_000_000}}

// Small is BenchmarkL1Size's value: 24 bytes of struct and a 19-byte string.
type Small struct {
	ID   int
	Name string
}

const (
	// smallIDBase makes every ID 8 digits long, so that every value encodes to the same length.
	smallIDBase = 10_000_000
	// sizeL1BytesPerEntry sizes tiercache's L1: it charges an entry its JSON (44 bytes) and
	// 256 bytes, ~300 bytes in all.
	sizeL1BytesPerEntry = 512

	// The garbage load: a service's short-lived allocations (request buffers, decoded
	// requests), 256 MiB a second in 8 KiB slices.
	sizeGarbageRate  = 256 << 20
	sizeGarbageChunk = 8 << 10
	sizeGCWindow     = time.Second
	sizeGCMinCycles  = 3
	sizeGCMaxWindow  = 10 * time.Second

	// sizeFillWorkers are the goroutines of a fill through Redis: enough for deep pipelines.
	sizeFillWorkers = 512
	// sizeSkipSlowFill: from this size on, contenders filled through Redis are skipped when
	// -benchtime is a count (see BenchmarkL1Size).
	sizeSkipSlowFill = 1_000_000

	sizeHitSamples = 200_000
	sizeHitBatch   = 64
)

// smallValue is the value of key i: a new allocation each time (its Name too).
func smallValue(i int) *Small {
	return &Small{ID: smallIDBase + i, Name: fmt.Sprintf("small-value-%07d", i)}
}

func checkSmall(s *Small, i int, err error) error {
	if err == nil && (s == nil || s.ID != smallIDBase+i) {
		return fmt.Errorf("%w: key %d", errWrongValue, i)
	}
	return err
}

// sizeKeys are the lookup keys of one size, 8 bytes each.
func sizeKeys(n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("s%07d", i)
	}
	return ks
}

// sizeCache is one contender of BenchmarkL1Size, set up and empty.
type sizeCache struct {
	// fill makes the contender hold keys[i] → smallValue(i) for every i, and proves that
	// every key is then served from process memory.
	fill func(b *testing.B)
	// hit reads keys[i] and checks its value.
	hit func(ctx context.Context, i int) error
	// lookups returns the local hits and misses so far; nil where a miss is an error of hit.
	lookups func() (hits, misses uint64)
	// valueBytes is value-B/entry.
	valueBytes int
	// store is the raw ristretto of openRistrettoSize (for openRistrettoReadThroughSize).
	store *ristretto.Cache[string, *Small]
}

// A sizeOpener sets a contender up for keys: made, connected, empty (closed by b.Cleanup).
type sizeOpener func(b *testing.B, s *redistest.Server, rc rueidis.Client, keys []string) sizeCache

var sizeContenders = []struct {
	name     string
	open     sizeOpener
	viaRedis bool // filled by Redis round trips
}{
	{"tiercache", openTieredSize, true},
	{"ristretto", openRistrettoSize, false},
	{"ristretto-read-through", openRistrettoReadThroughSize, true},
	{"go-redis-csc", openGoRedisCSCSize, true},
	{"go-redis-cache", openGoRedisCacheSize, false},
}

// benchtimeIsCount reports whether -benchtime is a count of iterations (100x) rather than a
// duration.
func benchtimeIsCount() bool {
	f := flag.Lookup("test.benchtime")
	return f != nil && strings.HasSuffix(f.Value.String(), "x")
}

// benchL1Size measures one contender holding len(keys) entries (see BenchmarkL1Size).
func benchL1Size(b *testing.B, s *redistest.Server, rc rueidis.Client, keys []string, open sizeOpener) {
	ctx := context.Background()
	n := float64(len(keys))
	before := liveHeap()
	sc := open(b, s, rc, keys)
	empty := liveHeap()
	sc.fill(b)
	full := liveHeap()

	load := startGarbage(sizeGarbageRate)
	defer load.stop()
	gc := measureGC(load)
	var h0, m0 uint64
	if sc.lookups != nil {
		h0, m0 = sc.lookups()
	}
	p99 := hitP99(b, sc.hit, len(keys))
	var h1, m1 uint64
	if sc.lookups != nil {
		h1, m1 = sc.lookups()
	}
	load.stop()

	r := rand.New(rand.NewPCG(uint64(len(keys)), 0x512e))
	b.ReportAllocs()
	for b.Loop() {
		if err := sc.hit(ctx, r.IntN(len(keys))); err != nil {
			b.Fatal(err)
		}
	}
	// b.Loop's first call cleared the metrics reported before it: report them now.
	heap := (float64(full) - float64(empty)) / n
	b.ReportMetric(heap, "heap-B/entry")
	b.ReportMetric(float64(sc.valueBytes), "value-B/entry")
	b.ReportMetric(heap-float64(sc.valueBytes), "beyond-value-B/entry")
	b.ReportMetric((float64(empty)-float64(before))/n, "setup-B/entry")
	b.ReportMetric(gc.fraction, "gc-cpu-fraction")
	b.ReportMetric(float64(gc.cycles), "gc-cycles")
	b.ReportMetric(gc.rate/(1<<20), "garbage-MB/s")
	b.ReportMetric(p99, "hit-p99-ns")

	if l := (h1 - h0) + (m1 - m0); l > 0 {
		b.ReportMetric(float64(h1-h0)/float64(l), "l1-hit-ratio")
	}
}

// liveHeap is the live heap: runtime.GC twice (the second collects what the first's
// sweeping and finalizers released), then MemStats.HeapAlloc.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// sizeClass is the bytes the Go allocator gives an allocation of n bytes: its size class
// (internal/runtime/gc.SizeClassToSize; objects up to 32 KiB), or whole 8 KiB pages beyond.
// Noscan allocations under 16 bytes share 16-byte blocks (the tiny allocator) and take less;
// no value here is that small.
func sizeClass(n int) int {
	classes := [...]int{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256,
		288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536,
		1792, 2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472,
		9728, 10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768}
	if i, _ := slices.BinarySearch(classes[:], n); i < len(classes) {
		return classes[i]
	}
	return (n + 8191) &^ 8191
}

// smallPointerBytes is what a *Small needs by itself: the struct and its string's bytes.
var smallPointerBytes = sizeClass(int(unsafe.Sizeof(Small{}))) + sizeClass(len(smallValue(0).Name))

// garbage is the steady allocation load of BenchmarkL1Size.
type garbage struct {
	made    atomic.Int64 // bytes allocated so far
	quit    chan struct{}
	done    chan struct{}
	stopped atomic.Bool
}

// garbageSink keeps the load's slices on the heap: each is garbage once the next is made.
var garbageSink []byte

// startGarbage allocates rate bytes a second of short-lived []byte, in sizeGarbageChunk
// slices, from one goroutine that catches up with its schedule every millisecond.
func startGarbage(rate int64) *garbage {
	g := &garbage{quit: make(chan struct{}), done: make(chan struct{})}
	chunk := sizeGarbageChunk
	go func() {
		defer close(g.done)
		start := time.Now()
		for {
			select {
			case <-g.quit:
				return
			default:
			}
			due := int64(time.Since(start).Seconds() * float64(rate))
			for made := g.made.Load(); made < due; made += int64(chunk) {
				garbageSink = make([]byte, chunk)
				g.made.Store(made + int64(chunk))
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return g
}

func (g *garbage) stop() {
	if !g.stopped.Swap(true) {
		close(g.quit)
		<-g.done
	}
}

// gcWindow is the GC's cost over a window of the garbage load.
type gcWindow struct {
	fraction float64 // GC CPU ÷ available CPU
	cycles   uint64
	rate     float64 // the load's bytes a second
}

// gcCPU is a reading of the runtime's GC CPU accounting, which the runtime brings up to date
// only when a GC cycle ends (runtime/metrics's /cpu/classes: a snapshot taken at mark
// termination).
type gcCPU struct {
	gc, total float64 // seconds: the GC's CPU time, and the CPU time available (GOMAXPROCS × wall)
	cycles    uint64
}

func readGCCPU() gcCPU {
	s := []metrics.Sample{
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/cpu/classes/total:cpu-seconds"},
		{Name: "/gc/cycles/total:gc-cycles"},
	}
	metrics.Read(s)
	return gcCPU{gc: s[0].Value.Float64(), total: s[1].Value.Float64(), cycles: s[2].Value.Uint64()}
}

// measureGC measures the GC's CPU under load (see gc-cpu-fraction in BenchmarkL1Size): from the
// end of a forced collection to the end of the last cycle completed once sizeGCWindow has
// passed and sizeGCMinCycles cycles have ended (or sizeGCMaxWindow has passed).
func measureGC(load *garbage) gcWindow {
	runtime.GC()
	g0, m0, t0 := readGCCPU(), load.made.Load(), time.Now()
	for {
		time.Sleep(5 * time.Millisecond)
		g1 := readGCCPU()
		if el := time.Since(t0); el < sizeGCWindow || (g1.cycles-g0.cycles < sizeGCMinCycles && el < sizeGCMaxWindow) {
			continue
		}
		w := gcWindow{cycles: g1.cycles - g0.cycles}
		w.rate = float64(load.made.Load()-m0) / time.Since(t0).Seconds()
		if w.cycles > 0 {
			w.fraction = (g1.gc - g0.gc) / (g1.total - g0.total)
		}
		return w
	}
}

// hitP99 times sizeHitSamples hits of random keys in batches of sizeHitBatch and returns the
// 99th percentile of the batches' mean, in nanoseconds.
func hitP99(b *testing.B, hit func(context.Context, int) error, n int) float64 {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(uint64(n), 0x99))
	var batch [sizeHitBatch]int
	means := make([]float64, 0, sizeHitSamples/sizeHitBatch)
	for range sizeHitSamples / sizeHitBatch {
		for j := range batch {
			batch[j] = r.IntN(n)
		}
		start := time.Now()
		for _, i := range batch {
			if err := hit(ctx, i); err != nil {
				b.Fatal(err)
			}
		}
		means = append(means, float64(time.Since(start).Nanoseconds())/sizeHitBatch)
	}
	slices.Sort(means)
	return means[min(int(0.99*float64(len(means))+0.5), len(means))-1]
}

// openTieredSize: Group[*Small], values put in with Set and read once each into L1.
func openTieredSize(b *testing.B, s *redistest.Server, _ rueidis.Client, keys []string) sizeCache {
	ctx := context.Background()
	n := len(keys)
	c := newTiered(b, s, func(o *tiered.Options) {
		o.L1MaxBytes = int64(n) * sizeL1BytesPerEntry
		o.ExactL1Stats = true
		// The fill is not what is measured: a GC pause of a million-entry heap on a busy
		// machine must not fail it (at 100 ms, report runs lost their 100k and 1M rows).
		o.Timeout = 5 * time.Second
	})
	g := tiered.NewGroup[*Small](c, "size", longTTL)
	// Open the connections the fill will use (rueidis dials each of its pipelined
	// connections when a key first maps to it), with keys outside the measured ones.
	forEachConcurrently(b, 1024, func(_, i int) error {
		k := "warm" + strconv.Itoa(i%256)
		if err := g.Set(ctx, k, smallValue(i%256)); err != nil {
			return err
		}
		_, err := g.Get(ctx, k)
		return err
	})
	warmL1(b, c, g, "warm0")
	return sizeCache{
		fill: func(b *testing.B) {
			st := c.Stats()
			forEachFrom(b, sizeFillWorkers, n, func(_, i int) error { return g.Set(ctx, strings.Clone(keys[i]), smallValue(i)) })
			// Each Set comes back as a tracking invalidation of its key, which also makes
			// unservable the fills of other keys of its L1 stripe made before it lands: wait
			// for them before filling.
			waitInvalidations(b, c, st.Invalidations.Tracking+uint64(n))
			forEachFrom(b, sizeFillWorkers, n, func(_, i int) error {
				v, err := g.Get(ctx, strings.Clone(keys[i]))
				return checkSmall(v, i, err)
			})
			ensureTieredL1(b, c, g, keys)
		},
		hit: func(ctx context.Context, i int) error {
			v, err := g.Get(ctx, keys[i])
			return checkSmall(v, i, err)
		},
		lookups: func() (uint64, uint64) {
			st := c.Stats()
			return st.L1Hits, st.L1Misses
		},
		valueBytes: smallPointerBytes,
	}
}

// waitInvalidations waits until c has received want tracking invalidations in all, or until
// their count stops moving for a second.
func waitInvalidations(b *testing.B, c *tiered.Cache, want uint64) {
	b.Helper()
	last, since := c.Stats().Invalidations.Tracking, time.Now()
	for last < want && time.Since(since) < time.Second {
		time.Sleep(5 * time.Millisecond)
		if cur := c.Stats().Invalidations.Tracking; cur != last {
			last, since = cur, time.Now()
		}
	}
}

// ensureTieredL1 proves that every key is an L1 hit: one read of each, counted by Stats
// (ExactL1Stats). A key that misses (its fill was dropped by ristretto's buffers, or made
// unservable by an invalidation of its stripe) is read again, which fills it.
func ensureTieredL1(b *testing.B, c *tiered.Cache, g *tiered.Group[*Small], keys []string) {
	b.Helper()
	ctx := context.Background()
	for round := 0; ; round++ {
		st0 := c.Stats()
		var missed []int
		if round == 0 {
			forEachConcurrently(b, len(keys), func(_, i int) error {
				v, err := g.Get(ctx, keys[i])
				return checkSmall(v, i, err)
			})
		} else {
			// One at a time, to learn which keys miss.
			for i := range keys {
				before := c.Stats().L1Misses
				v, err := g.Get(ctx, strings.Clone(keys[i]))
				if err := checkSmall(v, i, err); err != nil {
					b.Fatal(err)
				}
				if c.Stats().L1Misses != before {
					missed = append(missed, i)
				}
			}
		}
		st1 := c.Stats()
		hits, misses := st1.L1Hits-st0.L1Hits, st1.L1Misses-st0.L1Misses
		if misses == 0 && hits == uint64(len(keys)) {
			return
		}
		if round == 5 {
			b.Fatalf("tiercache: %d of %d keys still miss L1 after %d rounds (%d hits)", misses, len(keys), round, hits)
		}
		if round > 0 {
			b.Logf("tiercache: round %d: %d keys missed L1 (e.g. %v)", round, len(missed), missed[:min(len(missed), 5)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// openRistrettoSize: a raw ristretto.Cache[string, *Small] with room for every key.
func openRistrettoSize(b *testing.B, _ *redistest.Server, _ rueidis.Client, keys []string) sizeCache {
	n := int64(len(keys))
	rc, err := ristretto.NewCache(&ristretto.Config[string, *Small]{
		NumCounters: 10 * n, MaxCost: 2 * n, BufferItems: 64, IgnoreInternalCost: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(rc.Close)
	return sizeCache{
		fill: func(b *testing.B) {
			missing := make([]int, len(keys))
			for i := range missing {
				missing[i] = i
			}
			for round := 0; len(missing) > 0; round++ {
				if round == 5 {
					b.Fatalf("ristretto: %d of %d keys not held after %d rounds", len(missing), len(keys), round)
				}
				for _, i := range missing {
					// Set drops an item when ristretto's buffer is full: try again.
					for !rc.Set(strings.Clone(keys[i]), smallValue(i), 1) {
						runtime.Gosched()
					}
				}
				rc.Wait()
				missing = missing[:0]
				for i, k := range keys {
					if _, ok := rc.Get(k); !ok {
						missing = append(missing, i)
					}
				}
			}
		},
		hit: func(_ context.Context, i int) error {
			v, ok := rc.Get(keys[i])
			if !ok {
				return errors.New("ristretto: miss")
			}
			return checkSmall(v, i, nil)
		},
		valueBytes: smallPointerBytes,
		store:      rc,
	}
}

// openRistrettoReadThroughSize: the same raw ristretto.Cache[string, *Small], filled as a
// read-through cache in front of Redis would be (what a user writes by hand): each key's JSON
// read with a rueidis GET and decoded, from sizeFillWorkers goroutines, then Set (no
// coherence, no TTL). It holds the same values as ristretto; only their place in the heap
// differs: the short-lived allocations of each read land between the values, as they do in
// tiercache's fill, and that spreads the values over more of the allocator's spans, which
// the GC scans span by span.
func openRistrettoReadThroughSize(b *testing.B, _ *redistest.Server, rc rueidis.Client, keys []string) sizeCache {
	ctx := context.Background()
	n := len(keys)
	populateEach(b, rc, n, func(i int) string { return keys[i] }, func(i int) []byte {
		js, _ := json.Marshal(smallValue(i))
		return js
	})
	sc := openRistrettoSize(b, nil, nil, keys)
	rs := sc.store
	sc.fill = func(b *testing.B) {
		read := func(i int) error {
			bs, err := rc.Do(ctx, rc.B().Get().Key(strings.Clone(keys[i])).Build()).AsBytes()
			if err != nil {
				return err
			}
			v := new(Small)
			if err := json.Unmarshal(bs, v); err != nil {
				return err
			}
			// Set drops an item when ristretto's buffer is full: try again.
			for !rs.Set(strings.Clone(keys[i]), v, 1) {
				runtime.Gosched()
			}
			return nil
		}
		forEachFrom(b, sizeFillWorkers, n, func(_, i int) error { return read(i) })
		for round := 0; ; round++ {
			rs.Wait()
			var missing []int
			for i, k := range keys {
				if _, ok := rs.Get(k); !ok {
					missing = append(missing, i)
				}
			}
			if len(missing) == 0 {
				return
			}
			if round == 5 {
				b.Fatalf("ristretto-read-through: %d of %d keys not held after %d rounds", len(missing), n, round)
			}
			for _, i := range missing {
				if err := read(i); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	return sc
}

// openGoRedisCSCSize: go-redis's client-side cache, every key's JSON in Redis beforehand.
func openGoRedisCSCSize(b *testing.B, s *redistest.Server, rc rueidis.Client, keys []string) sizeCache {
	ctx := context.Background()
	n := len(keys)
	populateEach(b, rc, n, func(i int) string { return keys[i] }, func(i int) []byte {
		js, _ := json.Marshal(smallValue(i))
		return js
	})
	const warmKey = "warm"
	js0, _ := json.Marshal(smallValue(0))
	if err := rc.Do(ctx, rc.B().Set().Key(warmKey).Value(rueidis.BinaryString(js0)).Build()).Error(); err != nil {
		b.Fatal(err)
	}
	rdb := goredis.NewClient(&goredis.Options{Addr: s.Addr(), Protocol: 3,
		ClientSideCacheConfig: &goredis.ClientSideCacheConfig{MaxEntries: 2 * n}, ClientSideCacheCoalesceMisses: true})
	b.Cleanup(func() { _ = rdb.Close() })
	openPool(b, rdb)
	warmCSC(b, rdb, warmKey)
	get := func(ctx context.Context, key string, i int) error {
		bs, err := rdb.Get(ctx, key).Bytes()
		var v Small
		if err == nil {
			err = json.Unmarshal(bs, &v)
		}
		return checkSmall(&v, i, err)
	}
	return sizeCache{
		fill: func(b *testing.B) {
			forEachFrom(b, sizeFillWorkers, n, func(_, i int) error { return get(ctx, strings.Clone(keys[i]), i) })
			st0 := rdb.CSCStats()
			forEachConcurrently(b, n, func(_, i int) error { return get(ctx, keys[i], i) })
			st1 := rdb.CSCStats()
			if hits := st1.Hits - st0.Hits; hits != uint64(n) || st1.Misses != st0.Misses {
				b.Fatalf("go-redis-csc: %d of %d reads hit its cache, %d missed (%d entries)", hits, n, st1.Misses-st0.Misses, st1.Entries)
			}
		},
		hit: func(ctx context.Context, i int) error { return get(ctx, keys[i], i) },
		lookups: func() (uint64, uint64) {
			st := rdb.CSCStats()
			return st.Hits, st.Misses
		},
		valueBytes: sizeClass(len(js0)),
	}
}

// openPool opens every connection of rdb's pool (PoolSize), so that the fill opens none.
func openPool(b *testing.B, rdb *goredis.Client) {
	b.Helper()
	ctx := context.Background()
	conns := make([]*goredis.Conn, rdb.Options().PoolSize)
	for i := range conns {
		conns[i] = rdb.Conn()
		if err := conns[i].Ping(ctx).Err(); err != nil {
			b.Fatal(err)
		}
	}
	for _, cn := range conns {
		_ = cn.Close()
	}
}

// openGoRedisCacheSize: go-redis/cache's TinyLFU, no Redis behind it.
func openGoRedisCacheSize(b *testing.B, _ *redistest.Server, _ rueidis.Client, keys []string) sizeCache {
	ctx := context.Background()
	local := gocache.NewTinyLFU(len(keys), time.Hour)
	cd := gocache.New(&gocache.Options{LocalCache: local})
	mp, err := cd.Marshal(smallValue(0))
	if err != nil {
		b.Fatal(err)
	}
	return sizeCache{
		fill: func(b *testing.B) {
			for i := range keys {
				if err := cd.Set(&gocache.Item{Ctx: ctx, Key: strings.Clone(keys[i]), Value: smallValue(i), TTL: longTTL}); err != nil {
					b.Fatal(err)
				}
			}
			held := 0
			for _, k := range keys {
				if _, ok := local.Get(k); ok {
					held++
				}
			}
			if held != len(keys) {
				b.Fatalf("go-redis/cache: its TinyLFU holds %d of %d keys", held, len(keys))
			}
		},
		hit: func(ctx context.Context, i int) error {
			var v Small
			return checkSmall(&v, i, cd.Get(ctx, keys[i], &v))
		},
		valueBytes: sizeClass(len(mp)),
	}
}

// populateEach writes value(i) under key(i) for the first n keys, pipelined.
func populateEach(b *testing.B, rc rueidis.Client, n int, key func(i int) string, value func(i int) []byte) {
	b.Helper()
	const batch = 1000
	cmds := make(rueidis.Commands, 0, batch)
	for i := 0; i < n; i += batch {
		cmds = cmds[:0]
		for j := i; j < min(i+batch, n); j++ {
			cmds = append(cmds, rc.B().Set().Key(key(j)).Value(rueidis.BinaryString(value(j))).Ex(longTTL).Build())
		}
		for _, r := range rc.DoMulti(context.Background(), cmds...) {
			if err := r.Error(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
