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
	if rs.cpu != "AMD EPYC" || rs.procs != 2 || len(rs.list) != 4 {
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
	if h := headline(rs); !strings.Contains(h, "L1 hit (serial)") {
		t.Errorf("headline:\n%s", h)
	}
	if svg := chart(rs); !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, "go-redis-cache-Get") {
		t.Errorf("svg:\n%s", svg)
	}
}
