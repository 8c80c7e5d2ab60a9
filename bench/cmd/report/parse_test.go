package main

import (
	"strings"
	"testing"
)

const sampleOutput = `goos: linux
cpu: AMD EPYC
BenchmarkDataL1Hit/tiercache-Get/Serial-2   	 3871927	       30.0 ns/op	         1.000 l1-hit-ratio	       0 B/op	       0 allocs/op
BenchmarkDataL1Hit/tiercache-Get/Serial-2   	 3871927	       10.0 ns/op	         1.000 l1-hit-ratio	       0 B/op	       0 allocs/op
BenchmarkDataL1Hit/tiercache-Get/Serial-2   	 3871927	       20.0 ns/op	         1.000 l1-hit-ratio	       0 B/op	       0 allocs/op
BenchmarkDataL1Hit/go-redis-cache-Get/Serial-2 	  604668	      400 ns/op	     672 B/op	      10 allocs/op
BenchmarkDataL1Hit/go-redis-cache-Get/Serial-2 	  604668	      200 ns/op	     672 B/op	      10 allocs/op
BenchmarkDataL1Hit/tiercache-Get-pointer/Serial-2   	 3871927	       12.0 ns/op	         1.000 l1-hit-ratio	       0 B/op	       0 allocs/op
BenchmarkDataL1Hit/ristretto-Get-pointer/Serial-2   	 3871927	       24.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkDataL1Hit/sync.Map-Load-pointer/Serial-2   	 3871927	        5.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkImageProxyHit/tiercache-L1-2       	     100	     95735 ns/op	 534.81 MB/s	  133096 B/op	      32 allocs/op
BenchmarkDataInvalidation/tiercache-auto
BenchmarkDataInvalidation/tiercache-auto-2  	     100	    104234 ns/op	     35793 p50-ns	     82353 p99-ns	   31669 B/op	     132 allocs/op
PASS
`

func TestParse(t *testing.T) {
	rs, err := parse(strings.NewReader(sampleOutput))
	if err != nil {
		t.Fatal(err)
	}
	if rs.cpu != "AMD EPYC" || rs.procs != 2 || len(rs.list) != 7 {
		t.Fatalf("cpu %q, procs %d, %d results", rs.cpu, rs.procs, len(rs.list))
	}
	tc := rs.get("DataL1Hit", "tiercache-Get", "Serial")
	if tc == nil || tc.runs() != 3 {
		t.Fatalf("tiercache-Get: %+v", tc)
	}
	if m, _ := tc.median("ns/op"); m != 20 {
		t.Errorf("median of 30, 10, 20 = %v, want 20", m)
	}
	gr := rs.get("DataL1Hit", "go-redis-cache-Get", "Serial")
	if m, _ := gr.median("ns/op"); m != 300 {
		t.Errorf("median of 400, 200 = %v, want 300", m)
	}
	if rs.reference(gr) != tc {
		t.Error("go-redis-cache-Get is not compared with tiercache-Get")
	}
	tp := rs.get("DataL1Hit", "tiercache-Get-pointer", "Serial")
	for _, c := range []string{"tiercache-Get-pointer", "ristretto-Get-pointer", "sync.Map-Load-pointer"} {
		if ref := rs.reference(rs.get("DataL1Hit", c, "Serial")); ref != tp {
			t.Errorf("%s is compared with %+v, not tiercache-Get-pointer", c, ref)
		}
	}
	img := rs.get("ImageProxyHit", "tiercache-L1", "")
	if img == nil || img.mode != "" || len(img.values["MB/s"]) != 1 {
		t.Fatalf("image result: %+v", img)
	}
	inv := rs.get("DataInvalidation", "tiercache-auto", "")
	if p, _ := inv.median("p99-ns"); p != 82353 {
		t.Errorf("p99 %v", p)
	}
	table := scenarioTable(rs, "DataL1Hit")
	if !strings.Contains(table, "| 15.0×") || !strings.Contains(table, "l1-hit-ratio") {
		t.Errorf("table:\n%s", table)
	}
	h := headline(rs)
	for _, want := range []string{
		"| L1 hit (serial) | **12.0 ns (0)** | 300 ns (10) | – | 24.0 ns (0) ristretto-Get-pointer; 5.00 ns (0) sync.Map-Load-pointer |",
		"tiercache-Get-pointer", // the notes say which rows these are
	} {
		if !strings.Contains(h, want) {
			t.Errorf("headline lacks %q:\n%s", want, h)
		}
	}
	verdicts := map[string]string{}
	for _, tg := range targets(rs) {
		verdicts[tg.what] = tg.verdict
	}
	for what, want := range map[string]string{
		"L1 hit ≤ 1× ristretto-Get-pointer (tiercache-Get-pointer, Serial)": "holds",      // 12 vs 24
		"L1 hit ≤ 2× sync.Map (pointer), Serial":                            "**missed**", // 12 vs 5
		"L1 hit ≤ 2.5× sync.Map (pointer), Parallel":                        "–",
		"L1 hit 0 allocs/op (tiercache-Get-pointer, Serial)":                "holds",
	} {
		if got := verdicts[what]; got != want {
			t.Errorf("%s: %q, want %q", what, got, want)
		}
	}
	if svg := chart(rs); !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, "go-redis-cache-Get") {
		t.Errorf("svg:\n%s", svg)
	}
}

const busyOutput = `BenchmarkDataZipfBusy/tiercache/quiet/Serial-2   	 1000000	       150 ns/op	         0.9990 l1-hit-ratio	       0 B/op	       0 allocs/op
BenchmarkDataZipfBusy/tiercache/busy/Serial-2    	 1000000	       160 ns/op	         0.9985 l1-hit-ratio	      2998 unrelated-writes/s	         0.0004 invalidations/unrelated-write	       0 B/op	       0 allocs/op
BenchmarkDataZipfBusy/tiercache/quiet/Parallel-2 	 1000000	        80 ns/op	         0.9990 l1-hit-ratio	       0 B/op	       0 allocs/op
BenchmarkDataZipfBusy/tiercache/busy/Parallel-2  	 1000000	        90 ns/op	         0.9000 l1-hit-ratio	       120.5 unrelated-writes/s	         1.000 invalidations/unrelated-write	       0 B/op	       0 allocs/op
BenchmarkDataZipfBusy/go-redis-csc/quiet/Serial-2	  500000	       900 ns/op	         0.9990 l1-hit-ratio	     400 B/op	       6 allocs/op
BenchmarkDataZipfBusy/go-redis-csc/busy/Serial-2 	  500000	       950 ns/op	         0.9990 l1-hit-ratio	      2990 unrelated-writes/s	         0 invalidations/unrelated-write	     400 B/op	       6 allocs/op
BenchmarkDataScale/instances=16/Serial-2         	 1000000	       300 ns/op	         0.9500 l1-hit-ratio	       997 writes/s	        16.00 invalidations/write	        41.27 redis-cpu-ms/1k-writes	       0 B/op	       0 allocs/op
`

func TestBusyTargets(t *testing.T) {
	rs, err := parse(strings.NewReader(busyOutput))
	if err != nil {
		t.Fatal(err)
	}
	r := rs.get("DataZipfBusy", "tiercache/busy", "Serial")
	if r == nil || r.contender != "tiercache/busy" {
		t.Fatalf("tiercache/busy: %+v", r)
	}
	verdicts := map[string]string{}
	for _, tg := range targets(rs) {
		verdicts[tg.what] = tg.verdict
	}
	for what, want := range map[string]string{
		"Zipf beside unrelated writes: L1 hit ratio busy ≥ 0.99 × quiet (Serial)":   "holds",
		"Zipf beside unrelated writes: L1 hit ratio busy ≥ 0.99 × quiet (Parallel)": "**missed**",
		"invalidations per unrelated write ≈ 0 (≤ 0.01) (Serial)":                   "holds",
		"invalidations per unrelated write ≈ 0 (≤ 0.01) (Parallel)":                 "**missed**",
	} {
		if got := verdicts[what]; got != want {
			t.Errorf("%s: %q, want %q", what, got, want)
		}
	}
	h := headline(rs)
	if !strings.Contains(h, "| **0.999 / 0.999, 0.000 invalidations per unrelated write** | – | 0.999 / 0.999, 0.000 invalidations per unrelated write | – |") {
		t.Errorf("headline:\n%s", h)
	}
	table := scenarioTable(rs, "DataScale")
	for _, want := range []string{"| 997 |", "| 16.000 |", "| 41.3 |"} {
		if !strings.Contains(table, want) {
			t.Errorf("scale table lacks %q:\n%s", want, table)
		}
	}
	if got := fmtValue("unrelated-writes/s", 120.7); got != "121" {
		t.Errorf("unrelated-writes/s: %s", got)
	}
}

const sizeOutput = `BenchmarkL1Size/entries=100k/tiercache-2         	     100	      1398 ns/op	       203.5 beyond-value-B/entry	       256.1 garbage-MB/s	         0.2014 gc-cpu-fraction	         5.000 gc-cycles	       251.5 heap-B/entry	      5127 hit-p99-ns	         1.000 l1-hit-ratio	       102.9 setup-B/entry	        48.00 value-B/entry	      10 B/op	       0 allocs/op
BenchmarkL1Size/entries=100k/ristretto-2        	     100	      1652 ns/op	       107.6 beyond-value-B/entry	       255.8 garbage-MB/s	         0.08329 gc-cpu-fraction	        10.00 gc-cycles	       155.6 heap-B/entry	      2858 hit-p99-ns	        30.81 setup-B/entry	        48.00 value-B/entry	      10 B/op	       0 allocs/op
BenchmarkL1Size/entries=1M/ristretto-2          	     100	      1308 ns/op	       171.9 beyond-value-B/entry	       254.9 garbage-MB/s	         0.07182 gc-cpu-fraction	         3.000 gc-cycles	       219.9 heap-B/entry	      3961 hit-p99-ns	        50.62 setup-B/entry	        48.00 value-B/entry	      10 B/op	       0 allocs/op
BenchmarkDataMissLoad/tiercache/Serial-2         	     100	     60000 ns/op
BenchmarkDataMissLoad/rueidis-GET+SET+json/Serial-2	     100	     55000 ns/op
`

func TestSizeReport(t *testing.T) {
	rs, err := parse(strings.NewReader(sizeOutput))
	if err != nil {
		t.Fatal(err)
	}
	tc := rs.get("L1Size", "entries=100k/tiercache", "")
	if tc == nil || tc.mode != "" {
		t.Fatalf("entries=100k/tiercache: %+v", tc)
	}
	if e, c := sizeRow(tc); e != "100k" || c != "tiercache" {
		t.Errorf("sizeRow: %q, %q", e, c)
	}
	table := sizeTable(rs)
	for _, want := range []string{
		"| 100k | **tiercache** | 252 | 204 | 1.89× | 48 | 103 | 20.14% | 5 | 5127 ns | 1398 ns | 0 |",
		"| 1M | ristretto | 220 | 172 | 1.00× |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("size table lacks %q:\n%s", want, table)
		}
	}
	md := markdown(environment{}, rs)
	if !strings.Contains(md, "## Cost as the L1 grows (L1Size)") || !strings.Contains(md, table) {
		t.Errorf("markdown has no size table:\n%s", md)
	}
	verdicts := map[string]string{}
	for _, tg := range targets(rs) {
		verdicts[tg.what] = tg.verdict
	}
	for what, want := range map[string]string{
		"L1 size: beyond-value bytes per entry ≤ 1.3× raw ristretto's (100k entries)": "**missed**",
		"L1 size: GC CPU fraction ≤ raw ristretto's + 10% (100k entries)":             "**missed**",
		"L1 size: GC CPU fraction ≤ raw ristretto's + 10% (1M entries)":               "–", // no tiercache row
		"miss + load ≤ 1.2× rueidis GET + SET + json by hand (Serial)":                "holds",
		"miss + load ≤ 1.2× rueidis GET + SET + json by hand (Parallel)":              "–",
	} {
		if got := verdicts[what]; got != want {
			t.Errorf("%s: %q, want %q", what, got, want)
		}
	}
	svg := chart(rs)
	if !strings.Contains(svg, "100k · tiercache") || !strings.Contains(svg, ">204 B<") {
		t.Errorf("svg lacks the size panel:\n%s", svg)
	}
}
