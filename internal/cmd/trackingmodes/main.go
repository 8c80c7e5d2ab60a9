// Command trackingmodes measures the two ways Redis can tell an instance which of its L1
// entries went stale, to choose between them (issue: "invalidation traffic follows what L1
// may hold"):
//
//   - BCAST with one PREFIX per L1 group (what tiercache does): Redis keeps no per-key state;
//     an instance hears of every write under its groups' prefixes, and of nothing else.
//   - default mode (CLIENT TRACKING ON REDIRECT <listener>) on the connections that read:
//     Redis remembers, per key, which clients read it, and tells only them, once.
//
// It starts a throwaway redis-server on a free loopback port, and reports for each mode:
// invalidation pushes per unrelated write (a counter increment, a write to another group),
// pushes per write to a key the instance holds, Redis memory per tracked key, what Redis
// does when its tracking table is full (tracking-table-max-keys), and what a listener
// reconnection costs.
//
//	go run ./internal/cmd/trackingmodes [-keys 20000] [-writes 5000]
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

func main() {
	keys := flag.Int("keys", 20000, "keys the reader reads (and holds in L1)")
	writes := flag.Int("writes", 5000, "unrelated writes (counters and another group's keys)")
	flag.Parse()
	if err := run(*keys, *writes); err != nil {
		fmt.Fprintln(os.Stderr, "trackingmodes:", err)
		os.Exit(1)
	}
}

func run(keys, writes int) error {
	addr, stop, err := startRedis()
	if err != nil {
		return err
	}
	defer stop()
	ctx := context.Background()
	admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		return err
	}
	defer admin.Close()

	fmt.Printf("Redis %s on %s; %d keys read, %d unrelated writes\n\n", info(ctx, admin, "server", "redis_version"), addr, keys, writes)
	fmt.Println("| mode | pushes per unrelated write | pushes per write of a held key | Redis memory per tracked key | table full (tracking-table-max-keys 1000) |")
	fmt.Println("|---|---|---|---|---|")
	for _, mode := range []string{"bcast-prefix", "default-redirect"} {
		r, err := measure(ctx, admin, addr, mode, keys, writes)
		if err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
		fmt.Printf("| %s | %.4f | %.2f | %s | %s |\n", mode, r.unrelated, r.held, r.memPerKey, r.overflow)
	}
	return nil
}

type result struct {
	unrelated, held float64
	memPerKey       string
	overflow        string
}

// measure runs one mode on a fresh listener: the reader reads keys of group "articles", a
// writer increments counters and writes group "other", then rewrites some held keys.
func measure(ctx context.Context, admin rueidis.Client, addr, mode string, keys, writes int) (result, error) {
	var res result
	do := func(c rueidis.Client, args ...string) rueidis.RedisResult {
		return c.Do(ctx, c.B().Arbitrary(args[0]).Args(args[1:]...).Build())
	}
	if err := do(admin, "FLUSHALL").Error(); err != nil {
		return res, err
	}
	_ = do(admin, "CONFIG", "SET", "tracking-table-max-keys", "0").Error()
	var pushes atomic.Int64
	listener, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{addr}, ForceSingleClient: true, PipelineMultiplex: -1,
		ClientTrackingOptions: []string{"BCAST", "PREFIX", "p:tiercache:gen:"},
		OnInvalidations:       func(m []rueidis.RedisMessage) { pushes.Add(int64(len(m))) },
	})
	if err != nil {
		return res, err
	}
	defer listener.Close()
	reader, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true, PipelineMultiplex: -1})
	if err != nil {
		return res, err
	}
	defer reader.Close()
	writer := admin

	for i := range keys {
		if err := do(writer, "SET", "p:articles@0:"+strconv.Itoa(i), strings.Repeat("x", 300)).Error(); err != nil {
			return res, err
		}
	}
	memBefore := usedMemory(ctx, admin)
	switch mode {
	case "bcast-prefix":
		if err := do(listener, "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "p:articles@").Error(); err != nil {
			return res, err
		}
	case "default-redirect":
		id, err := do(listener, "CLIENT", "ID").AsInt64()
		if err != nil {
			return res, err
		}
		// The reader's connection is tracked in default mode, its invalidations sent to the
		// listener (rueidis's own client-side cache needs pushes on the data connections,
		// which takes them out of its direct mode; REDIRECT keeps them plain).
		if err := do(reader, "CLIENT", "TRACKING", "ON", "REDIRECT", strconv.FormatInt(id, 10)).Error(); err != nil {
			return res, err
		}
	}
	for i := range keys {
		if err := do(reader, "GET", "p:articles@0:"+strconv.Itoa(i)).Error(); err != nil {
			return res, err
		}
	}
	tracked := info(ctx, admin, "stats", "tracking_total_keys")
	memAfter := usedMemory(ctx, admin)
	if n, _ := strconv.Atoi(tracked); n > 0 {
		res.memPerKey = fmt.Sprintf("%d B (%s keys in the table)", (memAfter-memBefore)/int64(n), tracked)
	} else {
		res.memPerKey = "0 (no per-key state)"
	}

	// Unrelated writes: counters and another group.
	before := pushes.Load()
	for i := range writes {
		if i%2 == 0 {
			err = do(writer, "INCR", "p:count:article:"+strconv.Itoa(i%97)+":views").Error()
		} else {
			err = do(writer, "SET", "p:other@0:"+strconv.Itoa(i), "v").Error()
		}
		if err != nil {
			return res, err
		}
	}
	// A marker write to a held key: once it is heard, everything before it was.
	if err := do(writer, "SET", "p:articles@0:0", "marker").Error(); err != nil {
		return res, err
	}
	waitFor(func() bool { return pushes.Load() > before })
	res.unrelated = float64(pushes.Load()-before-1) / float64(writes)

	// Writes of held keys, each twice: default mode tells a client once per read.
	const rewrites = 200
	if mode == "default-redirect" {
		for i := 1; i <= rewrites; i++ { // read them again: the marker write untracked key 0
			_ = do(reader, "GET", "p:articles@0:"+strconv.Itoa(i)).Error()
		}
	}
	before = pushes.Load()
	for round := range 2 {
		for i := 1; i <= rewrites; i++ {
			if err := do(writer, "SET", "p:articles@0:"+strconv.Itoa(i), "w"+strconv.Itoa(round)).Error(); err != nil {
				return res, err
			}
		}
	}
	waitFor(func() bool { return pushes.Load()-before >= rewrites })
	res.held = float64(pushes.Load()-before) / float64(2*rewrites)

	// A full tracking table: Redis evicts tracked keys, and tells their readers (a false
	// invalidation each).
	if mode == "default-redirect" {
		if err := do(admin, "CONFIG", "SET", "tracking-table-max-keys", "1000").Error(); err != nil {
			return res, err
		}
		before = pushes.Load()
		for i := range keys {
			_ = do(reader, "GET", "p:articles@0:"+strconv.Itoa(i)).Error()
		}
		waitFor(func() bool { return pushes.Load()-before >= int64(keys-1000) })
		res.overflow = fmt.Sprintf("%d invalidations for %d reads, no write", pushes.Load()-before, keys)
		_ = do(admin, "CONFIG", "SET", "tracking-table-max-keys", "0").Error()
	} else {
		res.overflow = "no table"
	}
	return res, nil
}

func waitFor(cond func() bool) {
	for deadline := time.Now().Add(5 * time.Second); !cond() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

func usedMemory(ctx context.Context, c rueidis.Client) int64 {
	n, _ := strconv.ParseInt(info(ctx, c, "memory", "used_memory"), 10, 64)
	return n
}

func info(ctx context.Context, c rueidis.Client, section, field string) string {
	text, err := c.Do(ctx, c.B().Info().Section(section).Build()).ToString()
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return "?"
}

// startRedis runs a redis-server on a free loopback port until stop is called.
func startRedis() (addr string, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "trackingmodes-*")
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("redis-server (apt-get install -y redis-server): %w", err)
	}
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return "", nil, fmt.Errorf("redis-server did not start on %s", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return addr, func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = os.RemoveAll(dir) }, nil
}
