// Command demo shows tiercache at work: two cache instances, A and B, in one process, sharing
// one Redis, as two servers of one service would.
//
// Run it from the repository root:
//
//	go run ./examples/demo
//
// With REDIS_URL unset it starts a throwaway redis-server from PATH on a free 127.0.0.1 port,
// in its own temporary directory and without persistence, and removes it at exit (Ctrl-C
// included). Without redis-server it runs on an in-process Redis-protocol server (miniredis),
// says so and what that lacks (no server-assisted tracking: the instances stay coherent
// through the pub/sub bus alone), and still shows the two instances staying coherent;
// -embedded=false makes it exit with status 2 and the install hint instead. With REDIS_URL
// set it uses that server, under a key prefix of its own.
//
// It prints one line per step, marked ✓ or ✗: the latency of an L1 hit, an L2 hit and a load
// (median of a few); how long instance B keeps serving a value after instance A overwrote it;
// a like counter incremented concurrently from both instances; a group cleared on A and gone
// from B; and the caches' statistics. It exits 0 when every step behaved as expected, 1
// otherwise. -v logs the caches' decisions (zap, development format) to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/synspirit/tiercache/counter"
	"github.com/synspirit/tiercache/examples/internal/devredis"
	"github.com/synspirit/tiercache/tiered"
)

// Article is what the demo caches: a row of the site's articles table.
type Article struct {
	ID    int    `json:"id"`
	Title string `json:"title"`
	Body  string `json:"body"`
}

const (
	samples    = 7                    // measurements per latency, of which the median is shown
	dbLatency  = 2 * time.Millisecond // the simulated database query
	staleLimit = time.Second          // longest a step waits for B to notice a change
)

func main() { os.Exit(run()) }

func run() int {
	verbose := flag.Bool("v", false, "log the caches' decisions and errors to stderr")
	embedded := flag.Bool("embedded", true, "without redis-server on PATH, run on an in-process Redis-protocol server")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	redisURL, where := os.Getenv("REDIS_URL"), "REDIS_URL"
	embeddedAddr := ""
	if redisURL == "" {
		srv, err := devredis.Start(ctx, *embedded)
		switch {
		case errors.Is(err, devredis.ErrNoRedisServer):
			fmt.Fprintln(os.Stderr, err)
			return 2
		case ctx.Err() != nil:
			return interrupted()
		case err != nil:
			fmt.Fprintln(os.Stderr, "demo:", err)
			return 1
		}
		defer srv.Close()
		redisURL, where = srv.URL(), srv.String()
		if srv.Embedded {
			embeddedAddr = srv.Addr
			fmt.Println("no redis-server on PATH: running on an in-process Redis-protocol server (miniredis).")
			fmt.Println("It has no CLIENT TRACKING, so the instances run bus-only: they stay coherent through pub/sub,")
			fmt.Println("with L1 entries capped at 30 s in case a message is lost. For the real thing, " + devredis.InstallHint + ".")
			fmt.Println()
		}
	}

	var clients [2]rueidis.Client // for the in-process server: see devredis.EmbeddedClient
	if embeddedAddr != "" {
		for i := range clients {
			c, err := devredis.EmbeddedClient(embeddedAddr)
			if err != nil {
				fmt.Fprintln(os.Stderr, "demo:", err)
				return 1
			}
			defer c.Close()
			clients[i] = c
		}
	}

	logger := zap.NewNop()
	if *verbose {
		logger, _ = zap.NewDevelopment()
	}
	// A prefix of its own: on a shared REDIS_URL the demo touches no one else's keys. The
	// demo counts its L1 hits one by one (ExactL1Stats): by default the hottest keys' hits
	// are sampled, one in 16.
	prefix := fmt.Sprintf("tiercache-demo:%d:", time.Now().UnixNano())
	// The in-process server runs every command, and every counter's Lua script, on one lock
	// of the demo's own process: 100 concurrent likes can take longer than the default 100 ms
	// per call on a busy machine, so it gets a deadline that fits it.
	var timeout time.Duration
	if embeddedAddr != "" {
		timeout = time.Second
	}
	a, err := tiered.New(ctx, tiered.Options{RedisURL: redisURL, Redis: clients[0], KeyPrefix: prefix, Logger: logger.Named("A"), ExactL1Stats: true, Timeout: timeout})
	if err != nil {
		if ctx.Err() != nil {
			return interrupted()
		}
		fmt.Fprintln(os.Stderr, "demo: instance A:", err)
		return 1
	}
	defer a.Close()
	b, err := tiered.New(ctx, tiered.Options{RedisURL: redisURL, Redis: clients[1], KeyPrefix: prefix, Logger: logger.Named("B"), ExactL1Stats: true, Timeout: timeout})
	if err != nil {
		if ctx.Err() != nil {
			return interrupted()
		}
		fmt.Fprintln(os.Stderr, "demo: instance B:", err)
		return 1
	}
	defer b.Close()

	fmt.Printf("tiercache demo: instances A and B in one process, sharing %s\n", where)
	fmt.Printf("invalidation: %s, key prefix %q\n\n", a.Mode(), prefix)

	d := demo{a: a, b: b, prefix: prefix}
	steps := []func(context.Context) bool{d.reads, d.writeOnA, d.likes, d.clearGroup, d.stats}
	failed := 0
	for _, step := range steps {
		if !step(ctx) {
			failed++
		}
		if ctx.Err() != nil {
			return interrupted()
		}
	}
	fmt.Println()
	if failed > 0 {
		fmt.Printf("%d step(s) did not behave as expected\n", failed)
		return 1
	}
	fmt.Println("every step behaved as expected")
	return 0
}

func interrupted() int {
	fmt.Fprintln(os.Stderr, "\ninterrupted: stopping")
	return 130
}

// demo holds the two instances the steps run on.
type demo struct {
	a, b   *tiered.Cache
	prefix string
}

// report prints one step's line: mark, what, measured value, and how it was measured.
func report(ok bool, what, value, detail string) bool {
	mark := "✓"
	if !ok {
		mark = "✗"
	}
	fmt.Printf("  %s %-44s %10s   %s\n", mark, what, value, detail)
	return ok
}

// loadArticle is the simulated database query behind the loaders.
func loadArticle(ctx context.Context, id int) (Article, error) {
	select {
	case <-time.After(dbLatency):
		return Article{ID: id, Title: fmt.Sprintf("Article %d", id), Body: "Lorem ipsum dolor sit amet."}, nil
	case <-ctx.Done():
		return Article{}, ctx.Err()
	}
}

// reads measures a load, an L2 hit and an L1 hit of the same articles.
func (d *demo) reads(ctx context.Context) bool {
	onA := tiered.NewGroup[Article](d.a, "data:article", 5*time.Minute)
	onB := tiered.NewGroup[Article](d.b, "data:article", 5*time.Minute)
	keys := make([]string, samples)
	for i := range keys {
		keys[i] = onA.Key(i + 1)
	}

	// A load: the key is in neither tier, GetOrLoad calls the loader and stores its value.
	loads := d.a.Stats().Loads
	var took []time.Duration
	var err error
	for i, key := range keys {
		start := time.Now()
		_, err = onA.GetOrLoad(ctx, key, func(ctx context.Context) (Article, error) { return loadArticle(ctx, i+1) })
		took = append(took, time.Since(start))
		if err != nil {
			break
		}
	}
	ok := err == nil && d.a.Stats().Loads-loads == samples
	allOK := report(ok, "load on A (miss → loader, 2 ms query)", median(took), detail(err, "median of %d: Redis miss, loader, Redis SET", samples))

	// An L2 hit: B has never read these keys; A's loads put them in Redis.
	l2 := d.b.Stats().L2Hits
	took = took[:0]
	for i, key := range keys {
		start := time.Now()
		var v Article
		v, err = onB.Get(ctx, key)
		took = append(took, time.Since(start))
		if err == nil && v.ID != i+1 {
			err = fmt.Errorf("got article %d, want %d", v.ID, i+1)
		}
		if err != nil {
			break
		}
	}
	ok = err == nil && d.b.Stats().L2Hits-l2 == samples
	allOK = report(ok, "L2 hit on B (A's value, from Redis)", median(took), detail(err, "median of %d: Redis GET + JSON decode", samples)) && allOK

	// An L1 hit: B's copy, once ristretto has applied its buffered write.
	err = d.waitL1(ctx, d.b, func() error { _, err := onB.Get(ctx, keys[0]); return err })
	l1 := d.b.Stats().L1Hits
	took = took[:0]
	for range samples {
		if err != nil {
			break
		}
		start := time.Now()
		_, err = onB.Get(ctx, keys[0])
		took = append(took, time.Since(start))
	}
	ok = err == nil && d.b.Stats().L1Hits-l1 == samples
	return report(ok, "L1 hit on B (in process)", median(took), detail(err, "median of %d: no I/O, no decoding", samples)) && allOK
}

// waitL1 calls get until one call is served from c's L1: a value read from Redis reaches L1
// once ristretto applies its buffered write, a moment later.
func (d *demo) waitL1(ctx context.Context, c *tiered.Cache, get func() error) error {
	deadline := time.Now().Add(staleLimit)
	for time.Now().Before(deadline) {
		before := c.Stats().L1Hits
		if err := get(); err != nil {
			return err
		}
		if c.Stats().L1Hits > before {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return errors.New("value never served from L1")
}

// writeOnA overwrites a value B holds in L1 and measures how long B keeps serving the old
// one: the time from A's Set returning to Redis's invalidation push reaching B.
func (d *demo) writeOnA(ctx context.Context) bool {
	onA := tiered.NewGroup[Article](d.a, "data:article", 5*time.Minute)
	onB := tiered.NewGroup[Article](d.b, "data:article", 5*time.Minute)
	key := onA.Key(1)
	const rounds = 5
	var windows, sets []time.Duration
	stale := 0
	var err error
	for round := range rounds {
		// B serves the current value from its L1...
		if err = d.waitL1(ctx, d.b, func() error { _, err := onB.Get(ctx, key); return err }); err != nil {
			break
		}
		// ...A overwrites it...
		want := Article{ID: 1, Title: fmt.Sprintf("Article 1, edit %d", round+1)}
		start := time.Now()
		if err = onA.Set(ctx, key, want); err != nil {
			break
		}
		written := time.Now()
		sets = append(sets, written.Sub(start))
		// ...and B is polled until it stops serving the old value.
		for {
			var v Article
			if v, err = onB.Get(ctx, key); err != nil || v.Title == want.Title {
				break
			}
			stale++
			if time.Since(written) > staleLimit {
				err = fmt.Errorf("instance B still served the old value %v after A's Set", staleLimit)
				break
			}
		}
		if err != nil {
			break
		}
		windows = append(windows, time.Since(written))
	}
	ok := err == nil && len(windows) == rounds
	return report(ok, "write on A → B stops serving the old value", median(windows),
		detail(err, "median of %d after A's Set returned (max %s; Set %s; %d stale reads)", rounds, maxOf(windows), median(sets), stale))
}

// likes increments one like counter concurrently from both instances, in cache mode: the
// count mirrors the database, seeded by GetOrLoad, reseeded when it has expired.
func (d *demo) likes(ctx context.Context) bool {
	const seeded, perInstance = 41, 50
	var inDB atomic.Int64 // the database's like count, which the counter mirrors
	inDB.Store(seeded)
	countInDB := func(context.Context) (int64, error) { return inDB.Load(), nil }

	key := counter.Key{Target: "article", ID: "1", Counter: "likes"}
	onA := counter.FromCache(d.a, counter.Options{TTL: counter.DefaultCacheTTL})
	onB := counter.FromCache(d.b, counter.Options{TTL: counter.DefaultCacheTTL})
	if _, err := onA.GetOrLoad(ctx, key, countInDB); err != nil {
		return report(false, "likes from A and B", "-", detail(err, ""))
	}

	var wg sync.WaitGroup
	var failures atomic.Int64
	for _, cnt := range []*counter.Counters{onA, onB} {
		for range perInstance {
			wg.Go(func() {
				inDB.Add(1) // the like is written to the database first
				_, err := cnt.Increment(ctx, key, 1)
				if errors.Is(err, counter.ErrNotFound) { // expired: reseed from the database
					_, err = cnt.GetOrLoad(ctx, key, countInDB)
				}
				if err != nil {
					failures.Add(1)
				}
			})
		}
	}
	wg.Wait()
	fromA, errA := onA.Get(ctx, key, -1)
	fromB, errB := onB.Get(ctx, key, -1)
	err := errors.Join(errA, errB)
	if n := failures.Load(); n > 0 {
		err = errors.Join(err, fmt.Errorf("%d increments failed", n))
	}
	want := int64(seeded + 2*perInstance)
	ok := err == nil && fromA == want && fromB == want && inDB.Load() == want
	return report(ok, "likes from A and B (Redis atomics, no L1)", fmt.Sprint(fromB),
		detail(err, "%d seeded by GetOrLoad + %d×2 concurrent increments; A reads %d, B reads %d", seeded, perInstance, fromA, fromB))
}

// clearGroup clears a group on A while B holds its entries in L1, and measures how long B
// keeps serving them.
func (d *demo) clearGroup(ctx context.Context) bool {
	const pages, perPage = 3, 10
	onA := tiered.NewGroup[[]Article](d.a, "data:articles:list", 5*time.Minute)
	onB := tiered.NewGroup[[]Article](d.b, "data:articles:list", 5*time.Minute)
	loadPage := func(page int) func(context.Context) ([]Article, error) {
		return func(ctx context.Context) ([]Article, error) {
			list := make([]Article, 0, perPage)
			for id := (page-1)*perPage + 1; id <= page*perPage; id++ {
				list = append(list, Article{ID: id, Title: fmt.Sprintf("Article %d", id)})
			}
			return list, nil
		}
	}
	keys := make([]string, pages)
	var err error
	for p := range pages {
		keys[p] = onA.Key(p+1, perPage)
		if _, err = onA.GetOrLoad(ctx, keys[p], loadPage(p+1)); err != nil {
			break
		}
		// Both instances serve the page from L1 before the clear.
		if err = d.waitL1(ctx, d.a, func() error { _, err := onA.Get(ctx, keys[p]); return err }); err != nil {
			break
		}
		if err = d.waitL1(ctx, d.b, func() error { _, err := onB.Get(ctx, keys[p]); return err }); err != nil {
			break
		}
	}
	if err != nil {
		return report(false, "Group.Clear on A → gone from B", "-", detail(err, ""))
	}

	if err = onA.Clear(ctx); err != nil {
		return report(false, "Group.Clear on A → gone from B", "-", detail(err, ""))
	}
	cleared := time.Now()
	stale := 0
	for gone := 0; gone < pages; {
		gone = 0
		for _, key := range keys {
			_, getErr := onB.Get(ctx, key)
			switch {
			case errors.Is(getErr, tiered.ErrNotFound):
				gone++
			case getErr != nil:
				err = getErr
			default:
				stale++
			}
		}
		if err == nil && gone < pages && time.Since(cleared) > staleLimit {
			err = fmt.Errorf("instance B still served the cleared pages %v after Clear", staleLimit)
		}
		if err != nil {
			break
		}
	}
	window := time.Since(cleared)
	return report(err == nil, "Group.Clear on A → gone from B", fmtDuration(window),
		detail(err, "until B read all %d pages A and B held in L1 as gone (its own Redis reads included); %d stale reads", pages, stale))
}

// stats prints a few numbers of each instance's Stats.
func (d *demo) stats(context.Context) bool {
	allOK := true
	for _, in := range []struct {
		name string
		c    *tiered.Cache
	}{{"A", d.a}, {"B", d.b}} {
		s := in.c.Stats()
		ok := s.Breaker == tiered.BreakerClosed && s.L1Hits > 0 &&
			s.L2Errors == 0 && s.DecodeErrors == 0 && s.LoadErrors == 0 && s.Flushes == 0
		hitRatio := fmt.Sprintf("%.0f%%", 100*s.L1HitRatio())
		allOK = report(ok, "stats of "+in.name+" (L1 hit ratio)", hitRatio,
			fmt.Sprintf("L1 %d hits/%d misses, L2 %d hits/%d misses, %d loads, %d sets; invalidations %d local, %d tracking, %d bus",
				s.L1Hits, s.L1Misses, s.L2Hits, s.L2Misses, s.Loads, s.Sets,
				s.Invalidations.Local, s.Invalidations.Tracking, s.Invalidations.Bus)) && allOK
	}
	return allOK
}

// detail is the step's explanation, or its error when it failed.
func detail(err error, format string, a ...any) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprintf(format, a...)
}

func median(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmtDuration(s[len(s)/2])
}

func maxOf(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	return fmtDuration(slices.Max(ds))
}

// fmtDuration prints d in the unit that suits it: ns, µs or ms.
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%d ns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
}
