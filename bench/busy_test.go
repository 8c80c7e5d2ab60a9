package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocache "github.com/go-redis/cache/v9"
	goredis "github.com/redis/go-redis/v9"

	"github.com/synspirit/tiercache/counter"
	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// BenchmarkDataZipfBusy asks whether a reader pays for writes it does not care about. One
// instance reads articles, Zipf(s=1.1) over 20,000 keys of one group, with an L1 large enough
// for all of them (busyL1Bytes; every key is read into it before the first timed run). A
// second instance, in the background, increments view counters (counter.FromCache,
// busyCounterRate a second, keys count:article:<n>:views under the same KeyPrefix) and rewrites
// keys of a group the reader never makes (busyOtherRate a second). Each contender runs quiet
// (the reader alone) and then busy (with the background load), Serial and Parallel, on the
// same reader and the same filled L1:
//
//	l1-hit-ratio                   reads the reader served from process memory
//	invalidations/unrelated-write  invalidations the reader received during the run ÷ the
//	                               background writes (busy only): tiercache
//	                               Stats().Invalidations.Tracking + .Bus, go-redis-csc
//	                               CSCRefreshStats().Invalidations (keys named in the pushes
//	                               it received); go-redis/cache receives none, ever
//	unrelated-writes/s             the background rate reached during the run (busy only)
//
// Targets: tiercache busy ≥ 0.99 × quiet, and ~0 (≤ 0.01) invalidations per unrelated write.
//
// The background load is the same for every contender: a tiercache instance (KeyPrefix
// "bench:", like tiercache's reader; only tiercache's reader shares it) in a process of its
// own, the benchmark's binary run again as TestBusyLoad. In the benchmark's process its
// goroutines would starve: a Parallel reader whose every read is an L1 hit never blocks, and
// while every P runs such a goroutine Go's scheduler polls the network only from sysmon and
// queues what it wakes behind the readers, so a counter increment waits ~100 ms for its reply
// (its Timeout) and the load falls to ~10 writes a second. Another process shares only the
// CPUs, which the kernel does share. go-redis-csc tracks by key (CLIENT TRACKING ON, not
// BCAST), so Redis never tells it of keys it did not read.
func BenchmarkDataZipfBusy(b *testing.B) {
	s := redistest.Start(b)
	rc := newRueidisClient(b, s, false)
	base := sample
	base.ID, base.Likes = 0, 0
	js, _ := json.Marshal(base)

	b.Run("tiercache", func(b *testing.B) {
		c := newTiered(b, s, func(o *tiered.Options) { o.L1MaxBytes, o.Timeout = busyL1Bytes, busyTimeout })
		g := tiered.NewGroup[Article](c, "busy:articles", longTTL)
		populateTiered(b, rc, g, busyKeys, base)
		warmL1(b, c, g, "0") // the group's values go to L1 once its prefix is tracked
		benchBusy(b, s, &busyReader{
			read: func(ctx context.Context, _, key int) error {
				_, err := g.Get(ctx, zipfKeyNames[key])
				return err
			},
			lookups: func() (hits, misses uint64) {
				st := c.Stats()
				return st.L1Hits, st.L1Misses
			},
			invalidations: func() uint64 {
				st := c.Stats()
				return st.Invalidations.Tracking + st.Invalidations.Bus
			},
		})
	})

	b.Run("go-redis-csc", func(b *testing.B) {
		keys := prefixedKeys("grc:busy:", busyKeys)
		populate(b, rc, busyKeys, func(i int) string { return keys[i] }, js)
		rdb := newGoRedisCSC(b, s, goredis.ClientSideCacheConfig{MaxMemoryBytes: busyL1Bytes})
		warmCSC(b, rdb, keys[0])
		var reads stripedCount
		benchBusy(b, s, &busyReader{
			read: func(ctx context.Context, worker, key int) error {
				reads.add(worker)
				_, err := goRedisGetJSON(ctx, rdb, keys[key])
				return err
			},
			// A read that missed first is a miss, as in goRedisCSCPair.lookups.
			lookups: func() (hits, misses uint64) {
				m, r := rdb.CSCStats().Misses, reads.load()
				return r - min(m, r), m
			},
			invalidations: func() uint64 { return rdb.CSCRefreshStats().Invalidations },
		})
	})

	b.Run("go-redis-cache", func(b *testing.B) {
		keys := prefixedKeys("gr:busy:", busyKeys)
		grBytes, _ := gocache.New(&gocache.Options{}).Marshal(&base)
		populate(b, rc, busyKeys, func(i int) string { return keys[i] }, grBytes)
		local := &countingLocal{LocalCache: gocache.NewTinyLFU(2*busyKeys, time.Minute)}
		cd := newGoRedisCache(newGoRedisClient(b, s), local)
		benchBusy(b, s, &busyReader{
			read: func(ctx context.Context, _, key int) error {
				var a Article
				return cd.Get(ctx, keys[key], &a)
			},
			lookups: func() (hits, misses uint64) { return local.hits.Load(), local.misses.Load() },
		})
	})
}

const (
	busyKeys = 20_000
	busyS    = 1.1
	// busyL1Bytes holds every key in L1: tiercache charges ~570 B a key (JSON envelope +
	// 256 B), go-redis-csc ~500 B (RESP reply + its cache key + Redis key + 112 B), so 20,000
	// keys take 10–11 MiB. go-redis/cache's TinyLFU is sized in entries: 2 × busyKeys.
	busyL1Bytes     = 16 << 20
	busyCounterRate = 2_500 // counter increments a second
	busyOtherRate   = 500   // writes a second to a group the reader does not have
	// busyWarmRounds is how many times every key is read before the first timed run: ristretto
	// and the TinyLFU may drop a fill under contention, a second read stores it.
	busyWarmRounds = 2
	// minWritesPerMetric: below this many background writes in a run (at -benchtime 100x,
	// say), the write rate and the per-write metrics are left out rather than reported from a
	// handful.
	minWritesPerMetric = 100
	// busyTimeout replaces tiercache's 100 ms Timeout for the reader and the second instance
	// (BenchmarkDataScale's instances too). The metrics count hits and invalidations, not
	// latency; on a shared 2-core machine a Parallel reader's goroutines that never block
	// delay its rare Redis read by ~100 ms (they run ahead of it in Go's run queue), and other
	// processes' load did the same to the second instance's increments: at 100 ms both failed
	// runs now and then, at 1 s none did.
	busyTimeout = time.Second
)

// A busyReader is one contender's reading instance.
type busyReader struct {
	// read reads key on behalf of goroutine worker.
	read func(ctx context.Context, worker, key int) error
	// lookups returns the reader's local hits and misses so far.
	lookups func() (hits, misses uint64)
	// invalidations returns how many invalidations the reader has received so far; nil for a
	// contender that receives none.
	invalidations func() uint64
}

// benchBusy fills the reader's L1 with every key, then runs quiet and busy.
func benchBusy(b *testing.B, s *redistest.Server, r *busyReader) {
	ctx := context.Background()
	for range busyWarmRounds {
		forEachConcurrently(b, busyKeys, func(w, key int) error { return r.read(ctx, 1000+w, key) })
	}
	ops := func(worker int) func(context.Context) error {
		z := rand.NewZipf(rand.New(rand.NewPCG(uint64(worker)+1, 0xb05e)), busyS, 1, busyKeys-1)
		return func(ctx context.Context) error { return r.read(ctx, worker, int(z.Uint64())) }
	}
	b.Run("quiet", func(b *testing.B) { serialAndParallel(b, ops, busyProbe(r, nil)) })
	b.Run("busy", func(b *testing.B) { serialAndParallel(b, ops, busyProbe(r, startBusyLoad(b, s))) })
}

// busyLoadEnv carries the Redis URL to TestBusyLoad, the second instance.
const busyLoadEnv = "TIERCACHE_BENCH_BUSY_LOAD"

// TestBusyLoad is not a test: it is the second instance of BenchmarkDataZipfBusy, in a
// process of its own (see startBusyLoad), and skips unless run so. It increments view
// counters and rewrites keys of the group "busy:other" until its standard input ends. It
// prints "ready" once the load runs, and answers each line it reads with "done <n>", the
// writes completed so far.
func TestBusyLoad(t *testing.T) {
	url := os.Getenv(busyLoadEnv)
	if url == "" {
		t.Skip("the background load of BenchmarkDataZipfBusy, run by it")
	}
	c, err := tiered.New(context.Background(), tiered.Options{RedisURL: url, KeyPrefix: "bench:", Timeout: busyTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	views := counter.FromCache(c, counter.Options{})
	if err := views.Err(); err != nil {
		t.Fatal(err)
	}
	other := tiered.NewGroup[Article](c, "busy:other", longTTL)
	if err := other.Err(); err != nil {
		t.Fatal(err)
	}
	load := newLoad()
	load.run(busyCounterRate, 8, func(ctx context.Context, seq uint64) error {
		_, err := views.Increment(ctx, counter.Key{Target: "article", ID: zipfKeyNames[seq%busyKeys], Counter: "views"}, 1)
		return err
	})
	load.run(busyOtherRate, 4, func(ctx context.Context, seq uint64) error {
		a := sample
		a.ID, a.Likes = int(seq%busyKeys), int64(seq)
		return other.Set(ctx, zipfKeyNames[a.ID], a)
	})
	fmt.Println("ready")
	for in := bufio.NewScanner(os.Stdin); in.Scan(); {
		fmt.Printf("done %d\n", load.done.Load())
	}
	if err := load.halt(); err != nil {
		t.Fatal(err)
	}
}

// startBusyLoad runs TestBusyLoad in a process of its own (this binary again) on s, until b
// ends, and returns a function that asks it how many writes it has completed.
func startBusyLoad(b *testing.B, s *redistest.Server) (writes func() uint64) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBusyLoad$", "-test.count=1", "-test.timeout=0")
	cmd.Env = append(os.Environ(), busyLoadEnv+"="+s.URL())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	out := bufio.NewScanner(stdout)
	var other strings.Builder // what go test prints in the child: PASS, or why it failed
	// next returns the rest of the child's next line that starts with prefix, or fails b.
	next := func(prefix string) string {
		for out.Scan() {
			if rest, ok := strings.CutPrefix(out.Text(), prefix); ok {
				return rest
			}
			other.WriteString(out.Text() + "\n")
		}
		_ = in.Close()
		_ = cmd.Wait()
		b.Fatalf("background load ended: %v\n%s%s", out.Err(), &other, &stderr)
		return ""
	}
	b.Cleanup(func() {
		_ = in.Close() // the child stops its load and exits
		done := make(chan error, 1)
		go func() {
			for out.Scan() { // until the child exits: Wait must not close the pipe before
				other.WriteString(out.Text() + "\n")
			}
			done <- cmd.Wait()
		}()
		select {
		case err := <-done:
			if err != nil {
				b.Errorf("background load: %v\n%s%s", err, &other, &stderr)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			b.Errorf("background load did not stop within 10 s; killed\n%s%s", &other, &stderr)
		}
	})
	next("ready")
	return func() uint64 {
		if _, err := fmt.Fprintln(in, "?"); err != nil {
			b.Fatal(err)
		}
		n, err := strconv.ParseUint(next("done "), 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
}

// busyProbe reports the reader's hit ratio, and with a background load (writes not nil) its
// rate and the invalidations the reader received per background write.
func busyProbe(r *busyReader, writes func() uint64) probe {
	return func() func(*testing.B) {
		h0, m0 := r.lookups()
		var i0, w0 uint64
		if r.invalidations != nil {
			i0 = r.invalidations()
		}
		if writes != nil {
			w0 = writes()
		}
		start := time.Now()
		return func(b *testing.B) {
			elapsed := time.Since(start)
			h1, m1 := r.lookups()
			if n := (h1 - h0) + (m1 - m0); n > 0 {
				b.ReportMetric(float64(h1-h0)/float64(n), "l1-hit-ratio")
			}
			if writes == nil {
				return
			}
			w := writes() - w0
			if w < minWritesPerMetric {
				return
			}
			b.ReportMetric(float64(w)/elapsed.Seconds(), "unrelated-writes/s")
			if r.invalidations != nil {
				b.ReportMetric(float64(r.invalidations()-i0)/float64(w), "invalidations/unrelated-write")
			}
		}
	}
}

func prefixedKeys(prefix string, n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = prefix + zipfKeyNames[i]
	}
	return ks
}

// forEachConcurrently calls f for every i in [0, n), from 32 goroutines (w is the goroutine's
// number), untimed, and fails b on the first error.
func forEachConcurrently(b *testing.B, n int, f func(w, i int) error) {
	b.Helper()
	forEachFrom(b, 32, n, f)
}

// forEachFrom is forEachConcurrently from the given number of goroutines.
func forEachFrom(b *testing.B, workers, n int, f func(w, i int) error) {
	b.Helper()
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := f(w, i); err != nil {
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

// stripedCount is a counter that each goroutine adds to on its own cache line (by worker
// number), so that counting reads costs a Parallel run no contention.
type stripedCount [64]struct {
	n atomic.Uint64
	_ [56]byte
}

func (c *stripedCount) add(worker int) { c[worker%len(c)].n.Add(1) }

func (c *stripedCount) load() (n uint64) {
	for i := range c {
		n += c[i].n.Load()
	}
	return n
}

// A bgLoad runs operations in the background at fixed rates until the benchmark that made
// it ends.
type bgLoad struct {
	done atomic.Uint64 // operations completed without error, all rates together
	stop chan struct{}
	wg   sync.WaitGroup

	errMu sync.Mutex
	err   error // the first error
}

// loadMaxBacklog bounds how far a rate catches up after a stall: calls due longer ago are
// dropped, so that a stalled load resumes at its rate rather than in a burst.
const loadMaxBacklog = 100 * time.Millisecond

func newLoad() *bgLoad { return &bgLoad{stop: make(chan struct{})} }

// newBgLoad returns a load that stops, and reports its first error, when b ends.
func newBgLoad(b *testing.B) *bgLoad {
	l := newLoad()
	b.Cleanup(func() {
		if err := l.halt(); err != nil {
			b.Errorf("background load: %v", err)
		}
	})
	return l
}

// halt stops the load, waits for its goroutines and returns its first error.
func (l *bgLoad) halt() error {
	close(l.stop)
	l.wg.Wait()
	l.errMu.Lock()
	defer l.errMu.Unlock()
	return l.err
}

func (l *bgLoad) fail(err error) {
	l.errMu.Lock()
	if l.err == nil {
		l.err = err
	}
	l.errMu.Unlock()
}

// run calls op rate times a second, from workers goroutines, until the load stops; seq counts
// the calls of this rate. The workers wait for tokens (see tokens): nothing spins.
func (l *bgLoad) run(rate, workers int, op func(ctx context.Context, seq uint64) error) {
	tokens := l.tokens(rate)
	for range workers {
		l.wg.Go(func() {
			ctx := context.Background()
			for seq := range tokens {
				select {
				case <-l.stop:
					return
				default:
				}
				if err := op(ctx, seq); err != nil {
					l.fail(err)
					return
				}
				l.done.Add(1)
			}
		})
	}
}

// tokens hands out rate tokens a second, numbered from 0, until the load stops (then the
// channel is closed): a token bucket without a ticker. One goroutine sleeps for what is left
// of the interval, and after a late wake-up (a short time.Sleep can round up to the network
// poller's millisecond; a busy CPU delays it further) hands out every token that fell due
// meanwhile, at most loadMaxBacklog's worth, so that the mean rate holds. Tokens that find
// the channel full (its takers a whole backlog behind) are dropped.
func (l *bgLoad) tokens(rate int) <-chan uint64 {
	interval := time.Second / time.Duration(rate)
	tokens := make(chan uint64, max(1, int(loadMaxBacklog/interval)))
	l.wg.Go(func() {
		defer close(tokens)
		var seq uint64
		next := time.Now()
		for {
			now := time.Now()
			next = later(next, now.Add(-loadMaxBacklog))
			for ; !next.After(now); next = next.Add(interval) {
				select {
				case tokens <- seq:
					seq++
				default: // the workers are a whole backlog behind: drop the token
				}
			}
			select {
			case <-l.stop:
				return
			default:
			}
			time.Sleep(time.Until(next))
		}
	})
	return tokens
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
