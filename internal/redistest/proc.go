package redistest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// proc is a redis-server process that Server cannot describe: a TLS-only server, whose
// readiness check needs a TLS handshake, or a sentinel, whose configuration must be a file
// named first on the command line.
type proc struct {
	t       testing.TB
	bin     string
	logFile string
	args    func(port int) []string // the command line for a port
	ready   func(addr string) error // nil once the process serves
	port    int

	mu     sync.Mutex // protects cmd and exited
	cmd    *exec.Cmd
	exited chan struct{}
}

// startProc starts p on a free port (retrying on a port taken meanwhile) and registers its
// shutdown with t.Cleanup.
func startProc(t testing.TB, p *proc) {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := FreePort()
		if err != nil {
			t.Fatalf("redistest: free port: %v", err)
		}
		p.port = port
		if lastErr = p.start(); lastErr == nil {
			t.Cleanup(p.stop)
			return
		}
	}
	t.Fatalf("redistest: starting %s: %v", p.bin, lastErr)
}

func (p *proc) addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

func (p *proc) start() error {
	cmd := exec.Command(p.bin, p.args(p.port)...)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for p.ready(p.addr()) != nil {
		select {
		case <-exited:
			return fmt.Errorf("exited at start-up; log: %s", p.logTail())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("not ready within 10s; log: %s", p.logTail())
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	return nil
}

// stop kills the process (SIGKILL) and waits for it.
func (p *proc) stop() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.logFile)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}
