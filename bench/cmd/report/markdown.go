package main

import (
	"fmt"
	"strings"
)

// scenarioNotes say what each scenario measures; scenarios not listed get a table only.
var scenarioNotes = map[string]string{
	"DataL1Hit": "One ~300-byte struct held in process memory by every contender. tiercache returns " +
		"the decoded value; go-redis/cache keeps msgpack+s2 bytes in its TinyLFU and decodes them on " +
		"every hit; rueidis-DoCache is rueidis's client-side cache plus encoding/json; go-redis-csc is " +
		"go-redis v9's own client-side cache (RESP3, CLIENT TRACKING on every pooled connection), which " +
		"holds the raw GET reply: a hit is a GET through go-redis's command path answered from memory, " +
		"plus encoding/json; ristretto and " +
		"sync.Map hold the decoded struct under its full Redis key (floors: no coherence at all). " +
		"Value or pointer: tiercache-Get is a Group[Article], whose hit returns the ~300-byte struct by " +
		"value (a 112-byte copy on every read), like the floors ristretto-Get-value, ristretto-GetTTL and " +
		"sync.Map-Load-value, which hold the struct itself; tiercache-Get-pointer is a Group[*Article], " +
		"whose hit returns the pointer, like ristretto-Get-pointer and sync.Map-Load-pointer, which hold a " +
		"*Article. × tiercache compares the -pointer rows with tiercache-Get-pointer and every other row " +
		"with tiercache-Get.",
	"DataBatch": "A page of 100 Articles, l1hits% of them in the reader's process memory and the rest " +
		"in Redis only (another instance has just rewritten them, and the reader heard of it). " +
		"GetOrLoadMany reads L1, then the rest in one pipeline (GETRANGE and PTTL per key), and calls " +
		"its loader for none; GetOrLoad-x100 is the page without batches, 100 calls collected into a " +
		"map; rueidis-MGetCache is rueidis's client-side cache; rueidis-MGet+JSON the floor by hand " +
		"(one MGET, no local tier, no TTL read). l1hits/op is what each actually served from memory. " +
		"jetcache-go-MGet is jetcache-go's T.MGet (vendored): its local TinyLFU holds the encoded " +
		"bytes and decodes them on every hit, the rest comes from Redis through go-redis in one " +
		"pipeline of GETs, and invalidation is its SyncLocal event hook, which the benchmark wires " +
		"to Redis pub/sub.",
	"DataL1HitTagged": "An L1 hit of a value carrying 0, 1 or 3 tags: a tagged hit compares one " +
		"pointer per tag (an atomic load) with its tag's current version.",
	"DataL2Hit": "The same struct read from Redis and decoded, no in-process tier (tiercache with " +
		"DisableL1, go-redis/cache without LocalCache). rueidis-DoCache+json-localhit is *not* an L2 " +
		"read: after its first call rueidis serves it from its own client-side cache; it is listed " +
		"because it is what a rueidis user would reach for. go-redis-csc-localmiss is go-redis's " +
		"client-side cache made to miss every read (one entry, each goroutine reading two keys in turn): " +
		"a GET to Redis plus the cache's reservation, copy and eviction, what a go-redis-csc read costs " +
		"when the value is not local; l1-hit-ratio shows it misses. redis-cpu-us/op, client-cpu-us/op and writes/op as in DataMissLoad.",
	"DataMissLoad": "A key in neither tier: read, call the loader (a constant), store the value. " +
		"tiercache GetOrLoad, go-redis/cache Once, rueidis GET + SET by hand. tiercache-without-L1 is " +
		"GetOrLoad on a cache with DisableL1: no PTTL beside the read and no L1 fill (neither row has " +
		"its own write pushed back to it: with L1 it writes through its NOLOOP listener); the gap " +
		"between the two tiercache rows is what keeping L1 coherent costs a miss. redis-cpu-us/op: redis-server's CPU time (INFO cpu) per " +
		"operation, the Redis side of each row (it shares the 2 CPUs with the benchmark); client-cpu-us/op: " +
		"the benchmark process's CPU time per operation; writes/op: its write syscalls per operation " +
		"(how many commands each pipelined flush carries).",
	"DataSet": "A write of the struct (each goroutine its own key). tiercache-without-L1: a cache with " +
		"DisableL1; Redis pushes the write back to neither (see DataMissLoad), and tiercache writes " +
		"on its listener's one connection; redis-cpu-us/op, client-cpu-us/op and writes/op as in DataMissLoad.",
	"DataDeleteReread": "An invalidation followed by the read that rebuilds the entry " +
		"(Delete + GetOrLoad; go-redis/cache Delete + Once; DEL + GET + SET).",
	"DataZipf": "100k keys, Zipf(s=1.01), 95% reads / 5% writes, alternating between two instances " +
		"on one Redis. L1 budget: 1% of the key space in bytes = 1000 × the JSON size of a value. " +
		"tiercache: L1MaxBytes = budget (it charges JSON size + 256 B per entry, so it holds " +
		"fewer than 1000 entries). go-redis/cache: TinyLFU entries = budget ÷ its stored value size " +
		"(msgpack+s2, smaller than JSON, so more than 1000 entries); l1-budget-bytes shows entries × " +
		"value size. tiercache-same-entries gives tiercache room for as many entries as the TinyLFU. " +
		"go-redis-csc: MaxMemoryBytes = budget; it charges each entry its RESP reply, cache key, Redis " +
		"key and 112 B, split over 16 shards (l1-entries: resident entries per instance at the end); " +
		"its hit ratio counts a read that missed and then waited for another goroutine's fetch as a miss. " +
		"l1-hit-ratio counts L1 lookups of both instances (go-redis/cache: counted by a wrapper of " +
		"its LocalCache, its Stats count Redis hits only). stale-read-ratio: reads that returned a " +
		"value older than the newest write completed before the read began; go-redis/cache never " +
		"invalidates the other instance's local cache; go-redis-csc applies an invalidation when the " +
		"connection that read the key is next used, or drained (every 5 ms when idle), its own writes' too.",
	"DataInvalidation": "Instance B serves a key from its L1; A writes a new value; one sample is the " +
		"time from A's Set returning until B's Get stops returning the old value (p50-ns, p99-ns), " +
		"the Redis GET that B then makes included. B's reader waits one loopback TCP echo between " +
		"reads, as a server waits for its next request: a reader spinning on runtime.Gosched keeps " +
		"Go's scheduler from polling the network, where B's invalidation waits, and measures that. " +
		"ns/op is a whole cycle including re-warming B and says little. go-redis/cache is absent: " +
		"it never propagates, B serves the old value until its local TTL ends. go-redis-csc (default " +
		"options) applies an invalidation that reaches an idle pooled connection at its background " +
		"drainer's next tick (ClientSideCacheConfig.DrainInterval, 5 ms).",
	"DataZipfBusy": "A reader instance reads Zipf(s=1.1) over 20,000 keys of one group, its L1 holding all " +
		"of them (16 MiB; go-redis/cache: 40,000 TinyLFU entries), quiet (alone) and then busy: another " +
		"instance increments view counters (2,500/s, count:article:<n>:views under the same KeyPrefix) " +
		"and rewrites keys of a group the reader never makes (500/s). The background load is the same " +
		"tiercache instance for every contender, in a process of its own (in the benchmark's, a " +
		"Parallel reader that never blocks starves its goroutines: ~10 writes/s). " +
		"invalidations/unrelated-write: invalidations the reader received (tiercache " +
		"Stats().Invalidations.Tracking + .Bus; go-redis-csc CSCRefreshStats().Invalidations, which " +
		"tracks by key, not prefix) ÷ background writes; go-redis/cache receives none. " +
		"unrelated-writes/s: the rate reached (both need ≥ 100 writes in the run). × tiercache compares with tiercache/quiet: what the " +
		"load costs the reader (the 2 CPUs are shared with it and Redis).",
	"DataScale": "1, 4 and 16 tiercache instances (each its own connections and tracking listener) on " +
		"one redis-server, under the same traffic: 20,000 reads/s (Zipf(s=1.1) over 5,000 keys of one " +
		"group, every key in every L1 at the start, the instances taking the reads in turn) and 1,000 " +
		"writes/s spread over them, both paced, so ns/op is 1 s ÷ 20,000 while the instances keep up. " +
		"redis-cpu-ms/1k-writes: redis-server CPU (INFO cpu, sys + user) during the run ÷ writes/1000, " +
		"all of Redis's work included (the reads that missed L1 too); invalidations/write: tracking " +
		"invalidations received by all instances ÷ writes; l1-hit-ratio over all instances (each " +
		"instance gets 1/N of the reads but every write's invalidation); writes/s: the rate reached. " +
		"writes/s and invalidations/write need ≥ 100 writes in the run (not at -benchtime 100x).",
	"CounterIncrement": "Counter increments (always Redis atomics, never L1). tiercache: persistent mode, " +
		"one INCRBY under a context.Background; tiercache-cancellable-ctx: the same under a cancellable " +
		"context (an HTTP request's), which costs a timer of its own for the per-call deadline; " +
		"tiercache-TTL: cache mode, a Lua script that increments only an existing counter. " +
		"The raw rueidis call has no deadline; go-redis bounds each call by its connection's read and " +
		"write timeouts (3 s by default), set on the socket.",
	"CounterGetMany50": "One page of 50 counters.",
	"ImageProxyHit":    "A 50 KiB image served through the image proxy, from L1 and from Redis; floor: http.ServeContent from memory.",
	"L1Size": "10k, 100k and 1M entries of a small struct (an int and a 19-byte string, every value distinct) held " +
		"in process memory: tiercache (Group[*Small], L1 large enough for all; values put in with Set and read once " +
		"each into L1, every key proven an L1 hit by Stats before measuring), a raw ristretto Cache[string, *Small] " +
		"filled in a loop, the same ristretto filled as a read-through cache (ristretto-read-through: each value's " +
		"JSON read from Redis by a rueidis GET, decoded and Set, from 512 goroutines; the same values, in other " +
		"places in the heap), " +
		"go-redis-csc (go-redis v9's client-side cache: the raw GET reply of each value's JSON, decoded on every hit) " +
		"and go-redis-cache (go-redis/cache's TinyLFU(n, 1 h) holding msgpack, decoded on every hit). Each is measured " +
		"once per run. heap-B/entry: live heap (runtime.GC twice, MemStats.HeapAlloc) holding the n entries minus " +
		"the live heap of the same contender set up and empty (made, connected, every connection its fill uses " +
		"opened), ÷ n; the fill gives each contender fresh copies of the keys, so a contender that keeps a key pays " +
		"for it. value-B/entry: what a value needs by itself in the form the contender keeps it (*Small: the " +
		"24-byte struct's size class + its string's, 24 + 24; JSON and msgpack: their length's size class). " +
		"beyond-value-B/entry = heap − value: the key copy, entry, index and admission structures. setup-B/entry: " +
		"what the contender allocated before holding anything (connection buffers for tiercache and go-redis-csc; " +
		"admission counters sized by capacity for tiercache's L1 and ristretto; TinyLFU's map made for n entries), " +
		"÷ n. gc-cpu-fraction: under a steady load of 256 MiB/s of short-lived 8 KiB []byte from one goroutine, the " +
		"GC's CPU time (runtime/metrics /cpu/classes/gc/total, idle-priority marking included: this process is " +
		"otherwise idle, and the GC marks on idle CPUs what a busy service would mark on its own) ÷ the CPU " +
		"available (GOMAXPROCS × wall time), over whole GC cycles (from the end of a forced GC to the end of the " +
		"last cycle in a window of ≥ 1 s and ≥ 3 cycles, ≤ 10 s; gc-cycles). hit-p99-ns: under the same load, " +
		"200,000 hits of random held keys timed in batches of 64, the 99th percentile of the batch means. ns/op and " +
		"allocs/op: one hit of a random held key, without the load. At a -benchtime given as a count (CI's 100x), " +
		"the 1M size skips tiercache, ristretto-read-through and go-redis-csc, which are filled through Redis.",
}

func markdown(env environment, rs *results) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# tiercache benchmark results\n\n")
	p("Generated by `%s` on %s.\n\n", strings.TrimSpace(env.Command), env.Date)
	p("| | |\n|---|---|\n")
	p("| CPU | %s |\n", env.CPU)
	p("| logical CPUs | %d (GOMAXPROCS %d) |\n", env.Cores, env.GOMAXPROCS)
	p("| Go | %s |\n", env.GoVersion)
	p("| Redis | %s (local, loopback) |\n", env.RedisVersion)
	p("| runs per benchmark | %d (every number below is the median) |\n", env.Runs)
	p("| command | `%s` |\n\n", env.TestCommand)
	if env.Failure != "" {
		p("**Warning:** %s.\n\n", env.Failure)
	}
	if fails := failures(rs); len(fails) > 0 {
		p("**Failed in this run** (results missing or partial): %s.\n\n", strings.Join(fails, ", "))
	}
	p("Serial runs one goroutine; Parallel runs 16×GOMAXPROCS goroutines (`b.SetParallelism(16)`), " +
		"ns/op being wall time ÷ operations. *× tiercache* is the contender's median ÷ tiercache's in " +
		"the same mode (above 1: tiercache is faster). The machine may have been shared: compare " +
		"rows of one run, not runs of different days. Raw output: [results.txt](results.txt) " +
		"(`benchstat results.txt`).\n\n")

	p("## Headline\n\n%s\n", headline(rs))
	p("![ns/op per contender, and bytes per entry as the L1 grows](results.svg)\n\n")
	p("## Targets\n\n| target | measured | verdict |\n|---|---|---|\n")
	for _, t := range targets(rs) {
		p("| %s | %s | %s |\n", t.what, t.measured, t.verdict)
	}
	p("\n")
	for _, sc := range rs.scenarios() {
		if sc == sizeScenario {
			p("## Cost as the L1 grows (%s)\n\n", sc)
		} else {
			p("## %s\n\n", sc)
		}
		if n := scenarioNotes[sc]; n != "" {
			p("%s\n\n", n)
		}
		if sc == sizeScenario {
			p("%s\n", sizeTable(rs))
			continue
		}
		p("%s\n", scenarioTable(rs, sc))
	}
	return b.String()
}

// sizeScenario is BenchmarkL1Size, whose table is sizeTable.
const sizeScenario = "L1Size"

// sizeRow splits an L1Size contender, "entries=10k/tiercache", into its size and contender.
func sizeRow(r *result) (entries, contender string) {
	e, c, _ := strings.Cut(r.contender, "/")
	return strings.TrimPrefix(e, "entries="), c
}

// sizeTable is the table "Cost as the L1 grows": per size and contender, the medians of
// BenchmarkL1Size's metrics, and beyond-value bytes as a multiple of raw ristretto's at the
// same size.
func sizeTable(rs *results) string {
	var b strings.Builder
	b.WriteString("| entries | contender | heap-B/entry | beyond-value-B/entry | beyond-value × ristretto | value-B/entry | " +
		"setup-B/entry | gc-cpu-fraction | gc-cycles | hit-p99-ns (under load) | hit ns/op (no load) | allocs/op |\n" +
		"|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs.of(sizeScenario) {
		entries, c := sizeRow(r)
		ratio := "–"
		if rr := rs.get(sizeScenario, "entries="+entries+"/ristretto", ""); rr != nil {
			v, ok1 := r.median("beyond-value-B/entry")
			rv, ok2 := rr.median("beyond-value-B/entry")
			if ok1 && ok2 && rv > 0 {
				ratio = fmtRatio(v / rv)
			}
		}
		if strings.HasPrefix(c, "tiercache") {
			c = "**" + c + "**"
		}
		cells := []string{entries, c, cell(r, "heap-B/entry"), cell(r, "beyond-value-B/entry"), ratio, cell(r, "value-B/entry"),
			cell(r, "setup-B/entry"), cell(r, "gc-cpu-fraction"), cell(r, "gc-cycles"), cell(r, "hit-p99-ns"), cell(r, "ns/op"),
			cell(r, "allocs/op")}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	return b.String()
}

// scenarioTable is one scenario's rows: every contender and mode with the medians of its
// metrics.
func scenarioTable(rs *results, sc string) string {
	rows := rs.of(sc)
	basis := "ns/op"
	var extras []string
	for _, r := range rows {
		for _, u := range r.units {
			switch u {
			case "ns/op", "B/op", "allocs/op":
			default:
				if !contains(extras, u) {
					extras = append(extras, u)
				}
			}
		}
	}
	if contains(extras, "p50-ns") {
		basis = "p50-ns"
	}
	var b strings.Builder
	head := []string{"contender", "mode", "ns/op", basisHeader(basis), "B/op", "allocs/op"}
	head = append(head, extras...)
	b.WriteString("| " + strings.Join(head, " | ") + " |\n|")
	for range head {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		mode := r.mode
		if mode == "" {
			mode = "–"
		}
		cells := []string{r.contender, mode, cell(r, "ns/op"), ratioCell(rs, r, basis), cell(r, "B/op"), cell(r, "allocs/op")}
		for _, u := range extras {
			cells = append(cells, cell(r, u))
		}
		if strings.HasPrefix(r.contender, "tiercache") {
			cells[0] = "**" + cells[0] + "**"
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	return b.String()
}

func basisHeader(basis string) string {
	if basis == "ns/op" {
		return "× tiercache"
	}
	return basis + " × tiercache"
}

func ratioCell(rs *results, r *result, basis string) string {
	ref := rs.reference(r)
	if ref == nil {
		return "–"
	}
	v, ok1 := r.median(basis)
	rv, ok2 := ref.median(basis)
	if !ok1 || !ok2 || rv == 0 {
		return "–"
	}
	return fmtRatio(v / rv)
}

func cell(r *result, unit string) string {
	v, ok := r.median(unit)
	if !ok {
		return "–"
	}
	return fmtValue(unit, v)
}

func fmtValue(unit string, v float64) string {
	switch {
	case unit == "ns/op" || strings.HasSuffix(unit, "-ns"):
		return fmtNs(v)
	case strings.HasSuffix(unit, "-ratio"):
		return fmt.Sprintf("%.3f", v)
	case strings.HasSuffix(unit, "-fraction"):
		return fmt.Sprintf("%.2f%%", 100*v)
	case strings.HasSuffix(unit, "B/entry"):
		return fmt.Sprintf("%.0f", v) // bytes: a fraction of one says nothing
	case unit == "MB/s":
		return fmt.Sprintf("%.1f", v)
	case strings.HasSuffix(unit, "/write") || strings.HasSuffix(unit, "-write"):
		return fmt.Sprintf("%.3f", v) // ≈ 0 or a few per write
	case strings.HasSuffix(unit, "/s"):
		return fmt.Sprintf("%.0f", v)
	case v != float64(int64(v)):
		return fmt.Sprintf("%.1f", v) // a median between two integer runs
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtNs(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f ns", v)
	case v < 100:
		return fmt.Sprintf("%.1f ns", v)
	case v < 1e4:
		return fmt.Sprintf("%.0f ns", v)
	case v < 1e6:
		return fmt.Sprintf("%.1f µs", v/1e3)
	}
	return fmt.Sprintf("%.2f ms", v/1e6)
}

func fmtRatio(x float64) string {
	if x >= 10 {
		return fmt.Sprintf("%.1f×", x)
	}
	return fmt.Sprintf("%.2f×", x)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// headlineRow is one line of the README table: tiercache, go-redis/cache, go-redis's
// client-side cache and the best alternatives a user could write, in one scenario and mode.
type headlineRow struct {
	label, scenario, mode   string
	tiercache, goRedis, csc string
	baselines               []string // contender names; each shown with its value
	extra                   string   // a metric shown beside ns/op
}

// The L1 hit rows compare pointers with pointers: tiercache-Get-pointer (a Group[*Article])
// with the floors holding a *Article (headlineNotes).
var headlineRows = []headlineRow{
	{"L1 hit (serial)", "DataL1Hit", "Serial", "tiercache-Get-pointer", "go-redis-cache-Get", "go-redis-csc", []string{"ristretto-Get-pointer", "sync.Map-Load-pointer"}, ""},
	{"L1 hit (parallel)", "DataL1Hit", "Parallel", "tiercache-Get-pointer", "go-redis-cache-Get", "go-redis-csc", []string{"ristretto-Get-pointer", "sync.Map-Load-pointer"}, ""},
	// go-redis-csc has no L2 read of its own: its local miss is the nearest (a GET plus its cache's bookkeeping).
	{"L2 hit (serial)", "DataL2Hit", "Serial", "tiercache", "go-redis-cache", "go-redis-csc-localmiss", []string{"rueidis-GET+json"}, ""},
	{"L2 hit (parallel)", "DataL2Hit", "Parallel", "tiercache", "go-redis-cache", "go-redis-csc-localmiss", []string{"rueidis-GET+json"}, ""},
	{"miss + load (serial)", "DataMissLoad", "Serial", "tiercache", "go-redis-cache", "", []string{"rueidis-GET+SET+json"}, ""},
	{"Set (serial)", "DataSet", "Serial", "tiercache", "go-redis-cache", "", []string{"rueidis-SET+json"}, ""},
	{"Delete + re-read (serial)", "DataDeleteReread", "Serial", "tiercache", "go-redis-cache", "", []string{"rueidis-DEL+GET+SET+json"}, ""},
	{"Zipf 95/5, 2 instances (parallel)", "DataZipf", "Parallel", "tiercache", "go-redis-cache", "go-redis-csc", nil, "l1-hit-ratio"},
	{"Zipf 95/5, 2 instances (serial)", "DataZipf", "Serial", "tiercache", "go-redis-cache", "go-redis-csc", nil, "l1-hit-ratio"},
}

// headlineNotes follow the headline table when it has L1 hit rows.
const headlineNotes = "L1 hit rows: tiercache is a `Group[*Article]` (tiercache-Get-pointer), whose hit returns the " +
	"pointer it holds, and the floors hold a `*Article` too (ristretto-Get-pointer: a raw ristretto " +
	"`Cache[string, *Article]`; sync.Map-Load-pointer: a `sync.Map` storing the pointer), so that no row pays " +
	"for copying the struct; go-redis/cache and go-redis-csc decode their bytes on every hit, value or pointer. " +
	"The by-value rows (a `Group[Article]` and floors holding the struct) are in DataL1Hit below.\n"

// busyHeadlineMode is the mode of the headline's row for DataZipfBusy: Serial, where the
// background load runs at its rate (see the scenario's note).
const busyHeadlineMode = "Serial"

// headline is the README's table, in markdown.
func headline(rs *results) string {
	var b strings.Builder
	b.WriteString("| median ns/op (allocs/op) | tiercache | go-redis/cache v9 | go-redis v9 client-side cache | by hand / floor |\n|---|---|---|---|---|\n")
	n, l1Rows := 0, false
	for _, h := range headlineRows {
		tc := rs.get(h.scenario, h.tiercache, h.mode)
		if tc == nil {
			continue
		}
		n++
		cellOf := func(name string, withName bool) string {
			r := rs.get(h.scenario, name, h.mode)
			if name == "" || r == nil {
				return "–"
			}
			s := cell(r, "ns/op")
			if _, ok := r.median("allocs/op"); ok {
				s += " (" + cell(r, "allocs/op") + ")"
			}
			if h.extra != "" {
				s += ", " + h.extra + " " + cell(r, h.extra)
			}
			if withName {
				s += " " + name
			}
			return s
		}
		var floors []string
		for _, name := range h.baselines {
			if rs.get(h.scenario, name, h.mode) != nil {
				floors = append(floors, cellOf(name, true))
			}
		}
		if len(floors) == 0 {
			floors = []string{"–"}
		}
		fmt.Fprintf(&b, "| %s | **%s** | %s | %s | %s |\n", h.label, cellOf(h.tiercache, false), cellOf(h.goRedis, false),
			cellOf(h.csc, false), strings.Join(floors, "; "))
		if h.scenario == "DataL1Hit" {
			l1Rows = true
		}
	}
	if rs.get("DataZipfBusy", "tiercache/busy", busyHeadlineMode) != nil {
		n++
		busy := func(c string) string {
			r, q := rs.get("DataZipfBusy", c+"/busy", busyHeadlineMode), rs.get("DataZipfBusy", c+"/quiet", busyHeadlineMode)
			if r == nil || q == nil {
				return "–"
			}
			s := cell(r, "l1-hit-ratio") + " / " + cell(q, "l1-hit-ratio")
			if _, ok := r.median("invalidations/unrelated-write"); ok {
				s += ", " + cell(r, "invalidations/unrelated-write") + " invalidations per unrelated write"
			}
			return s
		}
		fmt.Fprintf(&b, "| Zipf reader beside unrelated writes (%s): L1 hit ratio busy / quiet | **%s** | %s | %s | – |\n",
			strings.ToLower(busyHeadlineMode), busy("tiercache"), busy("go-redis-cache"), busy("go-redis-csc"))
	}
	inv := []string{"tiercache-auto", "tiercache-bus-only", "go-redis-csc", "rueidis-DoCache"}
	if r := rs.get("DataInvalidation", inv[0], ""); r != nil {
		n++
		lat := func(name string) string {
			r := rs.get("DataInvalidation", name, "")
			if r == nil {
				return "–"
			}
			return cell(r, "p50-ns") + " / " + cell(r, "p99-ns")
		}
		fmt.Fprintf(&b, "| invalidation reaches another instance, p50 / p99 | **%s** (tracking), %s (bus-only) | never (until local TTL) | %s | %s rueidis DoCache |\n",
			lat(inv[0]), lat(inv[1]), lat(inv[2]), lat(inv[3]))
	}
	if n == 0 {
		return "(no data-path benchmarks in this run)\n"
	}
	if l1Rows {
		b.WriteString("\n" + headlineNotes)
	}
	return b.String()
}

// target is one of the performance targets of the data path, checked against the medians.
type target struct{ what, measured, verdict string }

func targets(rs *results) []target {
	med := func(sc, c, mode, unit string) (float64, bool) {
		r := rs.get(sc, c, mode)
		if r == nil {
			return 0, false
		}
		return r.median(unit)
	}
	verdict := func(ok bool) string {
		if ok {
			return "holds"
		}
		return "**missed**"
	}
	var out []target
	add := func(what string, ok bool, measured string, have bool) {
		if !have {
			out = append(out, target{what, "not measured in this run", "–"})
			return
		}
		out = append(out, target{what, measured, verdict(ok)})
	}
	for _, mode := range []string{"Serial", "Parallel"} {
		tc, ok1 := med("DataL1Hit", "tiercache-Get", mode, "ns/op")
		gr, ok2 := med("DataL1Hit", "go-redis-cache-Get", mode, "ns/op")
		add("L1 hit ≥ 15× faster than go-redis/cache's local hit ("+mode+")", gr/tc >= 15,
			fmt.Sprintf("%s vs %s: %s", fmtNs(tc), fmtNs(gr), fmtRatio(gr/tc)), ok1 && ok2)
	}
	for _, c := range []string{"tiercache-Get", "tiercache-Get-pointer"} {
		for _, mode := range []string{"Serial", "Parallel"} {
			a, ok := med("DataL1Hit", c, mode, "allocs/op")
			add("L1 hit 0 allocs/op ("+c+", "+mode+")", a == 0, fmtValue("allocs/op", a)+" allocs/op", ok)
		}
	}
	// atMost adds "what": tiercache's ns/op at most limit × other's, both of scenario sc in mode.
	atMost := func(what, sc, tiercache, other, mode string, limit float64) {
		tc, ok1 := med(sc, tiercache, mode, "ns/op")
		o, ok2 := med(sc, other, mode, "ns/op")
		add(what, tc <= limit*o, fmt.Sprintf("%s vs %s: %s", fmtNs(tc), fmtNs(o), fmtRatio(tc/o)), ok1 && ok2)
	}
	for _, mode := range []string{"Serial", "Parallel"} {
		atMost("L1 hit ≤ 1× ristretto-Get-pointer (tiercache-Get-pointer, "+mode+")", "DataL1Hit", "tiercache-Get-pointer", "ristretto-Get-pointer", mode, 1)
	}
	atMost("L1 hit ≤ 2× sync.Map (pointer), Serial", "DataL1Hit", "tiercache-Get-pointer", "sync.Map-Load-pointer", "Serial", 2)
	atMost("L1 hit ≤ 2.5× sync.Map (pointer), Parallel", "DataL1Hit", "tiercache-Get-pointer", "sync.Map-Load-pointer", "Parallel", 2.5)
	atMost("L2 hit ≤ 1.1× raw rueidis GET + json (Serial)", "DataL2Hit", "tiercache", "rueidis-GET+json", "Serial", 1.1)
	atMost("L2 hit ≤ 1.05× raw rueidis GET + json (Parallel)", "DataL2Hit", "tiercache", "rueidis-GET+json", "Parallel", 1.05)
	for _, mode := range []string{"Serial", "Parallel"} {
		atMost("miss + load ≤ 1.2× rueidis GET + SET + json by hand ("+mode+")", "DataMissLoad", "tiercache", "rueidis-GET+SET+json", mode, 1.2)
	}
	for _, mode := range []string{"Serial", "Parallel"} {
		atMost("Set ≤ 1.05× json + rueidis SET ("+mode+")", "DataSet", "tiercache", "rueidis-SET+json", mode, 1.05)
	}
	for _, mode := range []string{"Serial", "Parallel"} {
		for _, n := range []string{"1", "3"} {
			atMost("tagged L1 hit ≤ 1.2× untagged ("+n+" tags, "+mode+")", "DataL1HitTagged", "tags="+n, "tags=0", mode, 1.2)
		}
	}
	{
		many, ok1 := med("DataBatch", "l1hits=0%/tiercache-GetOrLoadMany", "", "ns/op")
		seq, ok2 := med("DataBatch", "l1hits=0%/tiercache-GetOrLoad-x100", "", "ns/op")
		add("batch of 100 at 0% L1 hits ≥ 10× faster than 100 GetOrLoad", seq >= 10*many,
			fmt.Sprintf("%s vs %s: %s", fmtNs(many), fmtNs(seq), fmtRatio(seq/many)), ok1 && ok2)
		many, ok1 = med("DataBatch", "l1hits=100%/tiercache-GetOrLoadMany", "", "ns/op")
		seq, ok2 = med("DataBatch", "l1hits=100%/tiercache-GetOrLoad-x100", "", "ns/op")
		add("batch of 100 at 100% L1 hits no slower than 100 GetOrLoad", many <= seq,
			fmt.Sprintf("%s vs %s: %s", fmtNs(many), fmtNs(seq), fmtRatio(many/seq)), ok1 && ok2)
	}
	for _, mode := range []string{"Serial", "Parallel"} {
		tc, ok1 := med("DataZipf", "tiercache", mode, "l1-hit-ratio")
		gr, ok2 := med("DataZipf", "go-redis-cache", mode, "l1-hit-ratio")
		add("Zipf: L1 hit ratio ≥ go-redis/cache's at the same L1 bytes ("+mode+")", tc >= gr,
			fmt.Sprintf("%.3f vs %.3f", tc, gr), ok1 && ok2)
	}
	for _, mode := range []string{"Serial", "Parallel"} {
		tc, ok1 := med("DataZipf", "tiercache", mode, "ns/op")
		gr, ok2 := med("DataZipf", "go-redis-cache", mode, "ns/op")
		add("Zipf: higher throughput than go-redis/cache ("+mode+")", tc < gr,
			fmt.Sprintf("%s vs %s per op: %s the throughput", fmtNs(tc), fmtNs(gr), fmtRatio(gr/tc)), ok1 && ok2)
	}
	for _, mode := range []string{"Serial", "Parallel"} {
		busy, ok1 := med("DataZipfBusy", "tiercache/busy", mode, "l1-hit-ratio")
		quiet, ok2 := med("DataZipfBusy", "tiercache/quiet", mode, "l1-hit-ratio")
		add("Zipf beside unrelated writes: L1 hit ratio busy ≥ 0.99 × quiet ("+mode+")", busy >= 0.99*quiet,
			fmt.Sprintf("%.3f vs %.3f: %.3f×", busy, quiet, busy/quiet), ok1 && ok2)
	}
	for _, mode := range []string{"Serial", "Parallel"} {
		inv, ok := med("DataZipfBusy", "tiercache/busy", mode, "invalidations/unrelated-write")
		add("invalidations per unrelated write ≈ 0 (≤ 0.01) ("+mode+")", inv <= 0.01, fmt.Sprintf("%.3f", inv), ok)
	}
	{
		tc, ok1 := med(sizeScenario, "entries=100k/tiercache", "", "beyond-value-B/entry")
		rr, ok2 := med(sizeScenario, "entries=100k/ristretto", "", "beyond-value-B/entry")
		add("L1 size: beyond-value bytes per entry ≤ 1.3× raw ristretto's (100k entries)", tc <= 1.3*rr,
			fmt.Sprintf("%.0f B vs %.0f B: %s", tc, rr, fmtRatio(tc/rr)), ok1 && ok2)
	}
	for _, entries := range []string{"100k", "1M"} {
		tc, ok1 := med(sizeScenario, "entries="+entries+"/tiercache", "", "gc-cpu-fraction")
		rr, ok2 := med(sizeScenario, "entries="+entries+"/ristretto", "", "gc-cpu-fraction")
		add("L1 size: GC CPU fraction ≤ raw ristretto's + 10% ("+entries+" entries)", tc <= 1.1*rr,
			fmt.Sprintf("%s vs %s: %s", fmtValue("gc-cpu-fraction", tc), fmtValue("gc-cpu-fraction", rr), fmtRatio(tc/rr)), ok1 && ok2)
	}
	for _, c := range []struct{ name, label string }{{"tiercache-auto", "tracking"}, {"tiercache-bus-only", "bus-only"}} {
		p99, ok := med("DataInvalidation", c.name, "", "p99-ns")
		add("invalidation reaches another instance: p99 < 1 ms ("+c.label+")", p99 < 1e6, fmtNs(p99), ok)
	}
	{
		tc, ok1 := med("CounterIncrement", "tiercache", "Serial", "ns/op")
		ru, ok2 := med("CounterIncrement", "rueidis-INCRBY", "Serial", "ns/op")
		add("counter Increment ≤ 1.15× raw rueidis INCRBY (Serial)", tc <= 1.15*ru,
			fmt.Sprintf("%s vs %s: %s", fmtNs(tc), fmtNs(ru), fmtRatio(tc/ru)), ok1 && ok2)
	}
	for _, c := range []string{"tiercache", "tiercache-TTL"} {
		tc, ok1 := med("CounterIncrement", c, "Parallel", "ns/op")
		gr, ok2 := med("CounterIncrement", "go-redis-IncrBy", "Parallel", "ns/op")
		add("counter Increment parallel throughput ≥ 1.5× go-redis IncrBy ("+c+")", gr >= 1.5*tc,
			fmt.Sprintf("%s vs %s per op: %s the throughput", fmtNs(tc), fmtNs(gr), fmtRatio(gr/tc)), ok1 && ok2)
	}
	return out
}
