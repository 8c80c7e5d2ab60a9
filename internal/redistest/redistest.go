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

// Server is one redis-server process on 127.0.0.1.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	args []string

	mu     sync.Mutex // protects cmd, exited and admin
	cmd    *exec.Cmd
	exited chan struct{}
	admin  rueidis.Client
}

// Option changes how a server is started.
type Option func(*Server)

// WithArgs passes extra redis-server arguments, e.g. WithArgs("--maxmemory", "10mb").
func WithArgs(args ...string) Option { return func(s *Server) { s.args = append(s.args, args...) } }

// Start starts a redis-server on a free loopback port, waits until it answers PING and
// registers its shutdown with t.Cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	for _, o := range opts {
		o(s)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s.port, err = FreePort()
		if err != nil {
			t.Fatalf("redistest: free port: %v", err)
		}
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Close)
			return s
		}
	}
	t.Fatalf("redistest: starting redis-server: %v", lastErr)
	return nil
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

func (s *Server) start() error {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--logfile", filepath.Join(s.dir, "redis.log"),
	}
	args = append(args, s.args...)
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ping(s.Addr()); err == nil {
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited at start-up; log: %s", s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server did not answer PING within 10s; log: %s", s.logTail())
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	return nil
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
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
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port is the server's TCP port; it stays the same across Stop and Restart.
func (s *Server) Port() int { return s.port }

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
	cmd, exited, admin := s.cmd, s.exited, s.admin
	s.cmd, s.admin = nil, nil
	s.mu.Unlock()
	if admin != nil {
		admin.Close()
	}
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Restart starts the server again on the same port, after Stop. Data does not survive.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond) // the port may linger for a moment after the kill
	}
	s.t.Fatalf("redistest: restarting redis-server on port %d: %v", s.port, err)
}

// Running reports whether the process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

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
