package main

import (
	"bufio"
	"io"
	"slices"
	"strconv"
	"strings"
)

// A result is one benchmark (all its -count runs): its metrics' values, by unit.
type result struct {
	name      string // full name without the -GOMAXPROCS suffix, e.g. DataL1Hit/tiercache-Get/Serial
	scenario  string // DataL1Hit
	contender string // tiercache-Get
	mode      string // Serial, Parallel or ""
	values    map[string][]float64
	units     []string // in order of first appearance
}

// median of the result's values in unit, and whether there are any.
func (r *result) median(unit string) (float64, bool) {
	vs := r.values[unit]
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2], true
	}
	return (s[n/2-1] + s[n/2]) / 2, true
}

// runs is how many times the benchmark ran (the -count that completed).
func (r *result) runs() int { return len(r.values["ns/op"]) }

// results is the parsed output of go test -bench, in order of first appearance.
type results struct {
	list   []*result
	byName map[string]*result
	failed []string // benchmarks reported by a --- FAIL line
	cpu    string   // from the "cpu:" header line
	procs  int      // the -N suffix: GOMAXPROCS
}

// parse reads go test -bench output (the standard benchmark format: name, iterations, then
// value-unit pairs). Other lines are ignored.
func parse(in io.Reader) (*results, error) {
	rs := &results{byName: map[string]*result{}}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if cpu, ok := strings.CutPrefix(line, "cpu: "); ok {
			rs.cpu = strings.TrimSpace(cpu)
			continue
		}
		if i := strings.Index(line, "--- FAIL: Benchmark"); i >= 0 {
			name, _ := splitProcs(strings.TrimSpace(line[i+len("--- FAIL: Benchmark"):]))
			if !slices.Contains(rs.failed, name) {
				rs.failed = append(rs.failed, name)
			}
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue // a benchmark's name printed alone (its log follows), or not a result
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue
		}
		name, procs := splitProcs(strings.TrimPrefix(f[0], "Benchmark"))
		if procs > 0 {
			rs.procs = procs
		}
		r := rs.byName[name]
		if r == nil {
			r = newResult(name)
			rs.byName[name] = r
			rs.list = append(rs.list, r)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			unit := f[i+1]
			if _, seen := r.values[unit]; !seen {
				r.units = append(r.units, unit)
			}
			r.values[unit] = append(r.values[unit], v)
		}
	}
	return rs, sc.Err()
}

// splitProcs cuts the -GOMAXPROCS suffix go test adds to a name ("L1Hit/x/Serial-2").
func splitProcs(name string) (string, int) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name, 0
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil || n <= 0 {
		return name, 0
	}
	return name[:i], n
}

func newResult(name string) *result {
	r := &result{name: name, values: map[string][]float64{}}
	parts := strings.Split(name, "/")
	r.scenario = parts[0]
	rest := parts[1:]
	if n := len(rest); n > 0 && (rest[n-1] == "Serial" || rest[n-1] == "Parallel") {
		r.mode = rest[n-1]
		rest = rest[:n-1]
	}
	r.contender = strings.Join(rest, "/")
	return r
}

// failures lists the benchmarks that failed at least once, without their parents.
func failures(rs *results) []string {
	var out []string
	for _, f := range rs.failed {
		leaf := true
		for _, g := range rs.failed {
			if strings.HasPrefix(g, f+"/") {
				leaf = false
			}
		}
		if leaf {
			out = append(out, f)
		}
	}
	return out
}

// scenarios returns the scenario names in order of first appearance.
func (rs *results) scenarios() []string {
	var out []string
	for _, r := range rs.list {
		if !slices.Contains(out, r.scenario) {
			out = append(out, r.scenario)
		}
	}
	return out
}

// of returns the results of one scenario, in order.
func (rs *results) of(scenario string) []*result {
	var out []*result
	for _, r := range rs.list {
		if r.scenario == scenario {
			out = append(out, r)
		}
	}
	return out
}

// get returns the result of scenario/contender/mode, or nil.
func (rs *results) get(scenario, contender, mode string) *result {
	name := scenario
	if contender != "" {
		name += "/" + contender
	}
	if mode != "" {
		name += "/" + mode
	}
	return rs.byName[name]
}

// reference is the row others in the scenario are compared with: the first tiercache
// contender of the same mode; for a contender named *-pointer (DataL1Hit's floors holding a
// pointer), the first tiercache*-pointer contender of the mode if there is one, so that
// pointers are compared with pointers.
func (rs *results) reference(r *result) *result {
	var first *result
	for _, o := range rs.of(r.scenario) {
		if o.mode != r.mode || !strings.HasPrefix(o.contender, "tiercache") {
			continue
		}
		if !strings.HasSuffix(r.contender, "-pointer") || strings.HasSuffix(o.contender, "-pointer") {
			return o
		}
		if first == nil {
			first = o
		}
	}
	return first
}
