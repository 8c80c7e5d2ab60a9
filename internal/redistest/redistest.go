// Package redistest starts real redis-server processes on free loopback ports for tests.
//
// Every server has its own temporary directory and is stopped by t.Cleanup. A missing
// redis-server binary fails the test with a message that says how to install it: tests of a
// Redis cache that silently skip when there is no Redis prove nothing.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// InstallHint is printed when redis-server cannot be found.
const InstallHint = "redis-server not found on PATH: install it (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis) or set REDIS_SERVER_BIN"

// Binary returns the redis-server binary to use: $REDIS_SERVER_BIN, else redis-server from PATH.
func Binary() (string, error) {
	if b := os.Getenv("REDIS_SERVER_BIN"); b != "" {
		return b, nil
	}
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New(InstallHint)
	}
	return p, nil
}

// mustBinary is Binary for a test: without redis-server the test fails, with the install
// hint the first time in a go test run and a short line after that (a run of every package
// would otherwise print the hint once per test).
func mustBinary(t testing.TB) string {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if firstHintOfRun() {
			t.Fatal(err)
		}
		t.Fatal("redis-server not found (the install hint is printed once per go test run)")
	}
	return bin
}

// firstHintOfRun reports whether no test binary of this go test run (the processes that
// share its parent, and their own children) has printed the hint yet, and marks that one has. A marker older than an
// hour is another run's whose parent's PID was reused.
func firstHintOfRun() bool {
	hintOnce.Do(func() {
		run := os.Getenv("TIERCACHE_REDISTEST_RUN") // a test's child process is of its run
		if run == "" {
			run = strconv.Itoa(os.Getppid())
			_ = os.Setenv("TIERCACHE_REDISTEST_RUN", run)
		}
		marker := filepath.Join(os.TempDir(), "tiercache-redistest-hint-"+run)
		if fi, err := os.Stat(marker); err == nil && time.Since(fi.ModTime()) > time.Hour {
			_ = os.Remove(marker)
		}
		f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			_ = f.Close()
		}
		hintFirst = err == nil || !errors.Is(err, os.ErrExist)
	})
	return hintFirst && hintShown.CompareAndSwap(false, true)
}

var (
	hintOnce  sync.Once
	hintFirst bool        // this process is the run's first to need the hint
	hintShown atomic.Bool // and has printed it
)

// Server is one redis-server process on 127.0.0.1.
type Server struct {
	t    testing.TB
	dir  string
	args []string
	p    *proc // the process: start, stop, readiness

	mu    sync.Mutex // protects admin
	admin rueidis.Client
}

// Option changes how a server is started.
type Option func(*Server)

// WithArgs passes extra redis-server arguments, e.g. WithArgs("--maxmemory", "10mb").
func WithArgs(args ...string) Option { return func(s *Server) { s.args = append(s.args, args...) } }

// Start starts a redis-server on a free loopback port, waits until it answers PING and
// registers its shutdown with t.Cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin := mustBinary(t)
	s := &Server{t: t, dir: t.TempDir()}
	for _, o := range opts {
		o(s)
	}
	s.p = &proc{
		t:       t,
		bin:     bin,
		logFile: filepath.Join(s.dir, "redis.log"),
		args: func(port int) []string {
			return append([]string{
				"--port", strconv.Itoa(port),
				"--bind", "127.0.0.1",
				"--dir", s.dir,
				"--save", "",
				"--appendonly", "no",
				"--daemonize", "no",
				"--logfile", filepath.Join(s.dir, "redis.log"),
			}, s.args...)
		},
		ready: Ping,
	}
	startProc(t, s.p)
	t.Cleanup(s.Close)
	return s
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Ping sends PING to a plain-text Redis at addr and expects PONG: the readiness check.
func Ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return pingConn(c)
}

// pingConn sends PING on c, expects PONG, and closes c.
func pingConn(c net.Conn) error {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected PING reply %q", line)
	}
	return nil
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return s.p.addr() }

// Port is the server's TCP port; it stays the same across Stop and Restart.
func (s *Server) Port() int { return s.p.port }

// URL is a redis:// URL for the server, with extra query parameters appended as given
// (e.g. URL("protocol=2")).
func (s *Server) URL(query ...string) string {
	u := "redis://" + s.Addr() + "/0"
	if len(query) > 0 {
		u += "?" + strings.Join(query, "&")
	}
	return u
}

// Stop kills the server (SIGKILL: an outage, not a clean shutdown) and waits for it to exit.
// The port stays reserved for Restart only by convention: nothing else in the test should bind it.
func (s *Server) Stop() {
	s.mu.Lock()
	admin := s.admin
	s.admin = nil
	s.mu.Unlock()
	if admin != nil {
		admin.Close()
	}
	s.p.stop()
}

// Restart starts the server again on the same port, after Stop. Data does not survive.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = s.p.start(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond) // the port may linger for a moment after the kill
	}
	s.t.Fatalf("redistest: restarting redis-server on port %d: %v", s.p.port, err)
}

// Running reports whether the process is up.
func (s *Server) Running() bool { return s.p.running() }

// Close stops the server; it is registered with t.Cleanup by Start.
func (s *Server) Close() { s.Stop() }

// Client returns an admin client of the server (RESP3, no client-side cache), created on
// first use and closed by Stop. It is not a client of the code under test.
func (s *Server) Client() rueidis.Client {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin != nil {
		return s.admin
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{s.Addr()},
		DisableCache:      true,
		ForceSingleClient: true,
		ClientName:        "redistest-admin",
	})
	if err != nil {
		s.t.Fatalf("redistest: admin client: %v", err)
	}
	s.admin = c
	return c
}

// Do runs one command on the admin client and fails the test on error.
func (s *Server) Do(args ...string) rueidis.RedisResult {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := s.Client()
	res := c.Do(ctx, c.B().Arbitrary(args[0]).Args(args[1:]...).Build())
	if err := res.Error(); err != nil && !rueidis.IsRedisNil(err) {
		s.t.Fatalf("redistest: %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// KillClients runs CLIENT KILL with the given filter (e.g. "TYPE", "normal", or "TYPE",
// "pubsub") and returns how many connections were closed. The admin connection is spared.
func (s *Server) KillClients(filter ...string) int64 {
	s.t.Helper()
	args := append([]string{"CLIENT", "KILL"}, filter...)
	args = append(args, "SKIPME", "yes")
	n, _ := s.Do(args...).AsInt64()
	return n
}
