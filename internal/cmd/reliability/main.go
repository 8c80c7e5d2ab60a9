// Command reliability regenerates RELIABILITY.md: it runs the fault and coherence torture
// tests with the race detector, each fuzz target for a while, and writes what was tried and
// what held.
//
//	go run ./internal/cmd/reliability [-fuzzexecs 200000] [-torture 5s] [-out RELIABILITY.md]
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

type fuzzTarget struct{ pkg, name, what string }

var fuzzTargets = []fuzzTarget{
	{"./tiered/", "FuzzEnvelope", "L2 envelope decoding"},
	{"./tiered/", "FuzzKey", "Group.Key arguments"},
	{"./bus/", "FuzzDecode", "bus message decoding"},
	{"./counter/", "FuzzKey", "counter key parts"},
	{"./image/", "FuzzCheckURL", "image proxy URL validation"},
	{"./image/", "FuzzAddrGuard", "image proxy address guard (any 16 bytes as an address)"},
}

func main() {
	fuzzexecs := flag.Int("fuzzexecs", 200000, "executions of each fuzz target (a count rather than a time: a time-bounded -fuzz run can end in a spurious 'context deadline exceeded')")
	torture := flag.Duration("torture", 5*time.Second, "length of each coherence torture run")
	out := flag.String("out", "RELIABILITY.md", "file to write")
	flag.Parse()
	if err := run(*fuzzexecs, *torture, *out); err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		os.Exit(1)
	}
}

type result struct {
	Test    string         `json:"test"`
	Figures map[string]any `json:"figures"`
}

func run(fuzzexecs int, torture time.Duration, out string) error {
	figs, err := os.CreateTemp("", "reliability-*.jsonl")
	if err != nil {
		return err
	}
	figs.Close()
	defer os.Remove(figs.Name())

	fmt.Println("running fault and torture tests (-race)...")
	cmd := exec.Command("go", "test", "-race", "-count=1", "-run", "Torture|Fault|Stampede|TestStartWithoutRedis$", "./tiered/", "-torture", torture.String(), "-timeout", "20m")
	cmd.Env = append(os.Environ(), "RELIABILITY_OUT="+figs.Name())
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	testsErr := cmd.Run()

	var results []result
	raw, _ := os.ReadFile(figs.Name())
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var r result
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			results = append(results, r)
		}
	}

	execsRe := regexp.MustCompile(`execs: (\d+)`)
	type fuzzResult struct {
		fuzzTarget
		execs string
		ok    bool
	}
	var fuzzed []fuzzResult
	for _, ft := range fuzzTargets {
		fmt.Printf("fuzzing %s %s for %d executions...\n", ft.pkg, ft.name, fuzzexecs)
		c := exec.Command("go", "test", "-run", "^$", "-fuzz", "^"+ft.name+"$", "-fuzztime", fmt.Sprintf("%dx", fuzzexecs), ft.pkg)
		b, err := c.CombinedOutput()
		m := execsRe.FindAllStringSubmatch(string(b), -1)
		execs := strconv.Itoa(fuzzexecs)
		if len(m) > 0 {
			execs = m[len(m)-1][1]
		}
		if err != nil {
			fmt.Print(string(b))
		}
		fuzzed = append(fuzzed, fuzzResult{ft, execs, err == nil})
	}

	var md strings.Builder
	fmt.Fprintf(&md, "# Reliability\n\nWhat was tried against tiercache and what held. Regenerate with `go run ./internal/cmd/reliability` ")
	fmt.Fprintf(&md, "(here: `-fuzzexecs %d -torture %v`).\n\n", fuzzexecs, torture)
	fmt.Fprintf(&md, "Generated %s on %s/%s, %d CPUs, %s, %s. Every run uses real `redis-server` processes on loopback and the race detector; ",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), goVersion(), redisVersion())
	fmt.Fprintf(&md, "goroutine leaks are checked by goleak after every test package (a leak fails the run).\n\n")
	status := "all passed"
	if testsErr != nil {
		status = "FAILED: " + testsErr.Error()
	}
	fmt.Fprintf(&md, "Fault and torture tests: **%s**.\n\n", status)

	fmt.Fprintf(&md, "## Load and faults\n\n| run | what was done | figures |\n|---|---|---|\n")
	sort.Slice(results, func(i, j int) bool { return results[i].Test < results[j].Test })
	for _, r := range results {
		fmt.Fprintf(&md, "| `%s` | %s | %s |\n", r.Test, describe(r.Test), figures(r.Figures))
	}
	fmt.Fprintf(&md, "\n## Bad input (fuzzing)\n\n| target | input | executions | result |\n|---|---|---|---|\n")
	for _, f := range fuzzed {
		res := "no failure"
		if !f.ok {
			res = "**FAILED**"
		}
		fmt.Fprintf(&md, "| `%s` `%s` | %s | %s | %s |\n", f.pkg, f.name, f.what, f.execs, res)
	}
	fmt.Fprintf(&md, "\nBeyond fuzzing, the unit tests cover corrupt and foreign values in Redis (a miss, logged and counted), `WRONGTYPE` under our keys (a clear error), empty keys and group names, and keys with control characters.\n")
	fmt.Fprintf(&md, "\n%s\n", imageProxyCoverage)
	if err := os.WriteFile(out, []byte(md.String()), 0o644); err != nil {
		return err
	}
	fmt.Println("wrote", out)
	if testsErr != nil {
		return testsErr
	}
	for _, f := range fuzzed {
		if !f.ok {
			return fmt.Errorf("fuzz target %s failed", f.name)
		}
	}
	return nil
}

// imageProxyCoverage is what the image package's unit tests check of the proxy.
const imageProxyCoverage = "The image proxy's unit tests, which send nothing off loopback, check: " +
	"SSRF attempts (numeric host forms, localhost names, redirects, names resolving to loopback) refused before any connection; " +
	"only raster images recognised by their bytes (PNG, JPEG, GIF, WebP, AVIF, BMP, ICO) served, also for cache entries stored as SVG, HTML or script, " +
	"and `Content-Security-Policy: default-src 'none'; sandbox` with `X-Content-Type-Options: nosniff` on every answer tested (200, 206, 304, HEAD, and the 400, 403, 405, 415 and 502 errors); " +
	"the address guard, as a pure function, refusing every range of the IANA special-purpose registries that is not globally reachable, " +
	"SIIT `::ffff:0:0/96` and the rest of `::/8`, `3fff::/20`, `2001:2::/48` and `192.88.99.0/24` among them, Teredo refused whole, " +
	"and IPv4-mapped, NAT64 and 6to4 addresses judged by the IPv4 address they embed; " +
	"an allowed host without a port allowing only ports 80 and 443 (another, such as Redis's 6379, refused before any lookup or connection); " +
	"`no_cache` ignored unless `ProxyOptions.AllowNoCache` trusts the request (20 untrusted requests, 1 origin fetch); " +
	"query parameters outside `ProxyOptions.KeepQueryParams` dropped from the fetched URL and the cache key (20 requests with junk parameters, 1 origin fetch, 1 Redis entry); " +
	"and error bodies that are one fixed text per status (400 aside, whose reason is about the client's own URL), with no resolver or origin address, DNS or dial error, option name or limit, " +
	"the detail going to the log, which names the option that would allow a refused request (`AllowedHosts`, with the entry to add for a port, or `AllowPrivateNetworks`)."

func describe(test string) string {
	switch {
	case strings.HasSuffix(test, "-no-fault"):
		return "3 instances, random Get/GetOrLoad/Set/Delete/Clear on 16 keys, a plain client writing and deleting behind their back, no fault: the baseline of the row below"
	case strings.HasSuffix(test, "-pubsub-kills"):
		return "the same, with the bus's pub/sub connections killed every 200 ms (messages lost at each kill; L1 off until the bus is back)"
	case strings.HasPrefix(test, "torture-"):
		return "3 instances, random Get/GetOrLoad/Set/Delete/Clear on 16 keys, a plain client writing and deleting behind their back, every client connection killed mid-run"
	case strings.HasPrefix(test, "gen-eviction-"):
		return "maxmemory 4mb with " + strings.TrimPrefix(test, "gen-eviction-") + ": 50 groups cleared, then filler writes evict keys (group generations among them) while every group's cleared key is read"
	case test == "saturated-reader":
		return "every P busy: 16 goroutines per P spin on L1 hits of one key while another instance writes it every 50 ms; time until the reader sees each write"
	case test == "kill-restart":
		return "mixed workload on 3 instances while redis-server is SIGKILLed and restarted"
	case test == "stampede":
		return "one cold key requested by 3 instances × 50 goroutines, loader taking 100 ms, without and with Options.LoadLockTTL"
	case test == "resets":
		return "mixed workload on 3 instances while a TCP proxy resets every connection"
	case test == "outage":
		return "a TCP proxy swallows all traffic to Redis: 50 counter increments (counters built on the cache), 100 concurrent GetOrLoad calls of one cold key, then Close with a counter load and a group load in flight"
	case test == "start-offline":
		return "an instance started with StartWithoutRedis while redis-server is down, which is then started"
	case strings.HasPrefix(test, "slow-"):
		return "8 workers on one instance while a TCP proxy " + map[string]string{"slow-latency": "delays every packet by 3× the deadline", "slow-blackhole": "swallows all traffic"}[test] + "; then healed"
	}
	return ""
}

func figures(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %v", strings.ReplaceAll(k, "_", " "), m[k]))
	}
	return strings.Join(parts, ", ")
}

func goVersion() string { return runtime.Version() }

func redisVersion() string {
	b, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		return "redis-server not found"
	}
	f := strings.Fields(string(b))
	for _, x := range f {
		if v, ok := strings.CutPrefix(x, "v="); ok {
			return "Redis " + v
		}
	}
	return strings.TrimSpace(string(b))
}
