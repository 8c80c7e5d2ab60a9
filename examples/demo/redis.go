package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/synspirit/tiercache/internal/redistest"
)

// installHint is printed when there is neither a REDIS_URL nor a redis-server to start.
const installHint = "redis-server not found on PATH: install it (apt-get install -y redis-server, brew install redis) or set REDIS_URL"

// errNoRedisServer means redis-server is not on PATH.
var errNoRedisServer = errors.New(installHint)

// throwawayRedis is a redis-server started for the demo: loopback only, its own temporary
// directory, no persistence. stop ends it and removes the directory.
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
		return nil, errNoRedisServer
	}
	dir, err := os.MkdirTemp("", "tiercache-demo-redis-")
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

// URL is the redis:// URL of the server.
func (r *throwawayRedis) URL() string { return "redis://" + r.addr + "/0" }

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
