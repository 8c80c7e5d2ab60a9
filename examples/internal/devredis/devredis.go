// Package devredis gives the examples a Redis to run on when none is configured: a
// throwaway redis-server from PATH (loopback only, its own temporary directory, no
// persistence) or, where there is none, an in-process Redis-protocol server (miniredis).
//
// The in-process server speaks enough of Redis for tiercache's bus-only mode, not all of it:
// it has no CLIENT TRACKING (so no server-assisted invalidation: instances stay coherent
// through the pub/sub bus, and L1 entries live at most L1TTL, 30 s by default, in case a
// message is lost), no keyspace notifications, no eviction and no persistence. It is for
// trying the examples on a machine with Go alone, never for tests or production.
package devredis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/rueidis"

	"github.com/synspirit/tiercache/internal/redistest"
)

// InstallHint says how to get a real redis-server.
const InstallHint = "install redis-server (apt-get install -y redis-server, brew install redis) or set REDIS_URL"

// ErrNoRedisServer means redis-server is not on PATH.
var ErrNoRedisServer = errors.New("redis-server not found on PATH: " + InstallHint)

// Server is a Redis started for an example. Close ends it.
type Server struct {
	Addr     string // host:port, on loopback
	Embedded bool   // the in-process server (see the package doc), not a redis-server
	redis    *throwawayRedis
	mini     *miniredis.Miniredis
}

// URL is the redis:// URL of the server. For the in-process server, connect with
// EmbeddedClient instead: a client made from the URL would take it for a cluster.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// EmbeddedClient connects to the in-process server at addr (started by this process or by
// another, see Embedded) as it must be spoken to: a single node (it answers CLUSTER SLOTS, and
// rueidis would make a cluster client and use sharded pub/sub, which it lacks), RESP2 (its
// RESP3 refuses PUBLISH on a connection that subscribes) and no client-side cache. Give it to
// tiered.Options.Redis: the cache then runs bus-only.
func EmbeddedClient(addr string) (rueidis.Client, error) {
	return rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{addr},
		ForceSingleClient: true,
		AlwaysRESP2:       true,
		DisableCache:      true,
	})
}

// Embedded starts the in-process server on addr, a loopback address, unless something
// already answers PING there (another instance's in-process server): then it returns a
// Server that only names it, and whose Close does nothing. Either way, connect with
// EmbeddedClient(s.Addr).
func Embedded(addr string) (*Server, error) {
	if answersPing(addr) {
		return &Server{Addr: addr, Embedded: true}, nil
	}
	return StartEmbedded(addr)
}

// answersPing reports whether a Redis-protocol server answers PING at addr (as a RESP array:
// the in-process server reads no inline commands).
func answersPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 7)
	n, _ := io.ReadFull(c, buf)
	return string(buf[:n]) == "+PONG\r\n"
}

// String says what the server is, for a log line.
func (s *Server) String() string {
	if s.Embedded {
		return "an in-process Redis-protocol server (miniredis) on " + s.Addr
	}
	return "a throwaway redis-server on " + s.Addr
}

// Closes reports whether Close stops a server (false for one another process started).
func (s *Server) Closes() bool { return s.mini != nil || s.redis != nil }

// Close stops the server (and removes a redis-server's directory).
func (s *Server) Close() {
	switch {
	case s.mini != nil:
		s.mini.Close()
	case s.redis != nil:
		s.redis.stop()
	}
}

// Start starts a throwaway redis-server on a free loopback port, or, when there is no
// redis-server on PATH and embedded is true, the in-process server. Without either it
// returns ErrNoRedisServer.
func Start(ctx context.Context, embedded bool) (*Server, error) {
	r, err := startRedis(ctx)
	switch {
	case err == nil:
		return &Server{Addr: r.addr, redis: r}, nil
	case errors.Is(err, ErrNoRedisServer) && embedded:
		return StartEmbedded("127.0.0.1:0")
	default:
		return nil, err
	}
}

// StartEmbedded starts the in-process server on addr, which must be a loopback address
// ("127.0.0.1:0" for a free port). It runs until Close or the end of the process.
func StartEmbedded(addr string) (*Server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("embedded redis: %s is not a loopback address", addr)
	}
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr(addr); err != nil {
		return nil, fmt.Errorf("embedded redis: %w", err)
	}
	return &Server{Addr: m.Addr(), Embedded: true, mini: m}, nil
}

// throwawayRedis is a redis-server started for an example: loopback only, its own
// temporary directory, no persistence. stop ends it and removes the directory.
type throwawayRedis struct {
	addr   string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
}

// startRedis starts redis-server on a free 127.0.0.1 port and waits until it answers PING.
func startRedis(ctx context.Context) (*throwawayRedis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNoRedisServer
	}
	dir, err := os.MkdirTemp("", "tiercache-example-redis-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // the free port may be taken between the check and redis-server's bind
		port, err := redistest.FreePort()
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		r := &throwawayRedis{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
		if lastErr = r.start(ctx, bin, port); lastErr == nil {
			return r, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	_ = os.RemoveAll(dir)
	return nil, fmt.Errorf("starting redis-server: %w", lastErr)
}

func (r *throwawayRedis) start(ctx context.Context, bin string, port int) error {
	r.cmd = exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", r.dir,
		"--save", "",
		"--appendonly", "no",
		"--logfile", filepath.Join(r.dir, "redis.log"),
	)
	if err := r.cmd.Start(); err != nil {
		return err
	}
	r.exited = make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(r.exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for redistest.Ping(r.addr) != nil {
		select {
		case <-r.exited:
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			return fmt.Errorf("redis-server exited at start-up: %s", lastLine(string(log)))
		case <-ctx.Done():
			r.kill()
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.kill()
			return errors.New("redis-server did not answer PING within 10s")
		}
	}
	return nil
}

// stop asks redis-server to exit (SIGTERM), kills it if it has not within 5 s, and removes
// its directory. It is safe when the process has already exited (a Ctrl-C in a terminal
// reaches redis-server too).
func (r *throwawayRedis) stop() {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(5 * time.Second):
		r.kill()
	}
	_ = os.RemoveAll(r.dir)
}

func (r *throwawayRedis) kill() {
	_ = r.cmd.Process.Kill()
	<-r.exited
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
