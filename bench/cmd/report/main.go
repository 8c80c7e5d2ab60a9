// Command report runs the benchmark suite of tiercache (the bench module) several times,
// summarises every benchmark by its medians, and writes bench/RESULTS.md, the chart
// bench/results.svg and the raw output bench/results.txt (for benchstat). It prints a headline
// table for the README on stdout; go test's own output goes to stderr as it runs.
//
// Run from the repository root (or from bench/):
//
//	go run ./bench/cmd/report                        # everything, -count 5
//	go run ./bench/cmd/report -bench 'DataL1Hit|DataZipf' -count 10 -benchtime 2s
//	go run ./bench/cmd/report -in bench/results.txt  # re-render from a saved run
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

type config struct {
	count     int
	bench     string
	benchtime string
	dir       string // the bench module
	in        string // parse this file instead of running the suite
}

func run() error {
	var cfg config
	flag.IntVar(&cfg.count, "count", 5, "runs of each benchmark (go test -count); medians are reported")
	flag.StringVar(&cfg.bench, "bench", ".", "benchmarks to run (go test -bench regexp)")
	flag.StringVar(&cfg.benchtime, "benchtime", "", "go test -benchtime (default: go test's, 1s)")
	flag.StringVar(&cfg.dir, "dir", "", "the bench module's directory (default: ./bench or ., whichever is it)")
	flag.StringVar(&cfg.in, "in", "", "summarise this saved go test -bench output instead of running the suite")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if cfg.count < 1 {
		return errors.New("-count must be at least 1")
	}
	dir, err := benchDir(cfg.dir)
	if err != nil {
		return err
	}

	env := environment{Date: time.Now().UTC().Format("2006-01-02 15:04 MST")}
	var raw []byte
	if cfg.in != "" {
		if raw, err = os.ReadFile(cfg.in); err != nil {
			return err
		}
		env.Command = "go run ./bench/cmd/report -in " + cfg.in
		env.TestCommand = "(saved output)"
		for line := range strings.Lines(string(raw)) {
			if c, ok := strings.CutPrefix(line, "command: "); ok {
				env.TestCommand = strings.TrimSpace(c)
				break
			}
		}
	} else {
		args := []string{"test", "-run", "^$", "-bench", cfg.bench, "-benchmem", "-count", strconv.Itoa(cfg.count), "-timeout", "3h"}
		if cfg.benchtime != "" {
			args = append(args, "-benchtime", cfg.benchtime)
		}
		args = append(args, ".")
		env.Command = "go run ./bench/cmd/report " + strings.Join(os.Args[1:], " ")
		env.TestCommand = "cd bench && go " + shellQuote(args)
		fmt.Fprintf(os.Stderr, "report: running %s\n", env.TestCommand)
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		var out bytes.Buffer
		fmt.Fprintf(&out, "command: %s\n", env.TestCommand) // a benchfmt configuration line
		cmd.Stdout = io.MultiWriter(&out, os.Stderr)
		cmd.Stderr = os.Stderr
		runErr := cmd.Run()
		raw = out.Bytes()
		if err := os.WriteFile(filepath.Join(dir, "results.txt"), raw, 0o644); err != nil {
			return err
		}
		if runErr != nil {
			// Keep what did run: one flaky benchmark should not discard an hour of numbers.
			env.Failure = fmt.Sprintf("go test failed (%v); benchmarks that failed are missing or have fewer runs", runErr)
		}
	}
	rs, err := parse(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	if len(rs.list) == 0 {
		return errors.New("no benchmark results in the output")
	}
	env.fill(dir, rs)

	svg := chart(rs)
	if err := os.WriteFile(filepath.Join(dir, "results.svg"), []byte(svg), 0o644); err != nil {
		return err
	}
	md := markdown(env, rs)
	if err := os.WriteFile(filepath.Join(dir, "RESULTS.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(headline(rs))
	if env.Failure != "" {
		return errors.New(env.Failure + "; see " + filepath.Join(dir, "results.txt"))
	}
	fmt.Fprintf(os.Stderr, "report: wrote %s, %s and %s\n", filepath.Join(dir, "RESULTS.md"),
		filepath.Join(dir, "results.svg"), filepath.Join(dir, "results.txt"))
	return nil
}

// benchDir finds the bench module: the flag's value, else ./bench, else . (each must hold the
// go.mod of github.com/synspirit/tiercache/bench).
func benchDir(flagDir string) (string, error) {
	cands := []string{"bench", "."}
	if flagDir != "" {
		cands = []string{flagDir}
	}
	for _, d := range cands {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/synspirit/tiercache/bench\n")) {
			return d, nil
		}
	}
	return "", errors.New("cannot find the bench module: run from the repository root or bench/, or pass -dir")
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$^|*?()[]{}\\&;<>") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// environment is what RESULTS.md says about where and how the numbers were taken.
type environment struct {
	Date, Command, TestCommand string
	CPU                        string
	Cores                      int
	GOMAXPROCS                 int
	GoVersion, RedisVersion    string
	Runs                       int
	Failure                    string // go test's failure, if it failed
}

func (e *environment) fill(dir string, rs *results) {
	e.CPU, e.Cores = cpuInfo()
	if e.CPU == "" {
		e.CPU = rs.cpu
	}
	e.GOMAXPROCS = rs.procs
	e.GoVersion = commandLine(dir, "go", "version")
	bin := os.Getenv("REDIS_SERVER_BIN")
	if bin == "" {
		bin = "redis-server"
	}
	e.RedisVersion = commandLine(dir, bin, "--version")
	for _, r := range rs.list {
		e.Runs = max(e.Runs, r.runs())
	}
}

// cpuInfo reads the CPU model and the number of logical CPUs from /proc/cpuinfo.
func cpuInfo() (model string, cores int) {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "", runtime.NumCPU()
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			cores++
		case "model name":
			if model == "" {
				model = strings.TrimSpace(v)
			}
		}
	}
	if cores == 0 {
		cores = runtime.NumCPU()
	}
	return model, cores
}

func commandLine(dir, name string, args ...string) string {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "unknown (" + name + ": " + err.Error() + ")"
	}
	return strings.TrimSpace(string(out))
}
