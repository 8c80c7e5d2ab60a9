package redistest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SentinelMasterName is the name the sentinels of StartSentinel monitor.
const SentinelMasterName = "mymaster"

// Sentinel is a Sentinel setup: one master, one replica and three sentinels (quorum 2,
// down-after-milliseconds 500, failover-timeout 2000), all on loopback.
type Sentinel struct {
	t         testing.TB
	Master    *Server // at start-up
	Replica   *Server // at start-up
	Sentinels []*SentinelServer
}

// SentinelServer is one redis-server --sentinel process.
type SentinelServer struct {
	p *proc
}

// Addr is host:port of the sentinel.
func (s *SentinelServer) Addr() string { return s.p.addr() }

// Stop kills the sentinel.
func (s *SentinelServer) Stop() { s.p.stop() }

// StartSentinel starts the master, its replica (and waits for the link), then three
// sentinels, and returns once every sentinel knows the master, its replica and the other
// two sentinels. Every process is stopped by t.Cleanup.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	bin := mustBinary(t)
	st := &Sentinel{t: t}
	st.Master = Start(t)
	st.Replica = Start(t, WithArgs("--replicaof", "127.0.0.1", strconv.Itoa(st.Master.Port())))
	waitUntil(t, "replica link up", func() error {
		if v := infoField(st.Replica, "replication", "master_link_status"); v != "up" {
			return fmt.Errorf("master_link_status:%s", v)
		}
		return nil
	})
	for i := 0; i < 3; i++ {
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		s := &SentinelServer{}
		s.p = &proc{
			t:       t,
			bin:     bin,
			logFile: filepath.Join(dir, "sentinel.log"),
			args: func(port int) []string {
				// Sentinel rewrites its file: write a fresh one for every attempt.
				cfg := strings.Join([]string{
					"port " + strconv.Itoa(port),
					"bind 127.0.0.1",
					"dir " + dir,
					"logfile " + filepath.Join(dir, "sentinel.log"),
					"sentinel resolve-hostnames no",
					fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2", SentinelMasterName, st.Master.Port()),
					"sentinel down-after-milliseconds " + SentinelMasterName + " 500",
					"sentinel failover-timeout " + SentinelMasterName + " 2000",
				}, "\n") + "\n"
				if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
					t.Errorf("redistest: %v", err)
				}
				return []string{conf, "--sentinel"}
			},
			ready: Ping,
		}
		startProc(t, s.p)
		st.Sentinels = append(st.Sentinels, s)
	}
	st.waitKnown()
	return st
}

// waitKnown waits until every sentinel sees one replica and the two other sentinels.
func (st *Sentinel) waitKnown() {
	st.t.Helper()
	waitUntil(st.t, "sentinels to know master, replica and each other", func() error {
		for _, s := range st.Sentinels {
			m, err := sentinelMaster(s.Addr())
			if err != nil {
				return err
			}
			if m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" {
				return fmt.Errorf("%s: num-slaves %s, num-other-sentinels %s", s.Addr(), m["num-slaves"], m["num-other-sentinels"])
			}
		}
		return nil
	})
}

// Addrs are the sentinels' host:port.
func (st *Sentinel) Addrs() []string {
	var a []string
	for _, s := range st.Sentinels {
		a = append(a, s.Addr())
	}
	return a
}

// URL is redis://s1,s2,s3/0?master_set=mymaster, with extra query parameters as given.
func (st *Sentinel) URL(query ...string) string {
	q := append([]string{"master_set=" + SentinelMasterName}, query...)
	return "redis://" + strings.Join(st.Addrs(), ",") + "/0?" + strings.Join(q, "&")
}

// MasterAddr is the master's host:port according to the first sentinel that answers.
func (st *Sentinel) MasterAddr() (string, error) {
	var lastErr error
	for _, s := range st.Sentinels {
		if !s.p.running() {
			continue
		}
		m, err := sentinelMaster(s.Addr())
		if err != nil {
			lastErr = err
			continue
		}
		return m["ip"] + ":" + m["port"], nil
	}
	return "", lastErr
}

// WaitMaster waits until every sentinel names addr as the master and reports it healthy.
func (st *Sentinel) WaitMaster(addr string, timeout time.Duration) {
	st.t.Helper()
	waitUntilFor(st.t, "sentinels to agree on master "+addr, timeout, func() error {
		for _, s := range st.Sentinels {
			m, err := sentinelMaster(s.Addr())
			if err != nil {
				return err
			}
			if got := m["ip"] + ":" + m["port"]; got != addr || strings.Contains(m["flags"], "down") || strings.Contains(m["flags"], "failover") {
				return fmt.Errorf("%s: master %s, flags %s", s.Addr(), got, m["flags"])
			}
		}
		return nil
	})
}

// sentinelMaster is SENTINEL MASTER mymaster as a map, on a connection of its own.
func sentinelMaster(addr string) (map[string]string, error) {
	c, err := dialAdmin(addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := ctxTimeout(2 * time.Second)
	defer cancel()
	arr, err := c.Do(ctx, c.B().Arbitrary("SENTINEL", "MASTER").Args(SentinelMasterName).Build()).ToAny()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	switch v := arr.(type) {
	case map[string]any:
		for k, x := range v {
			out[k] = fmt.Sprint(x)
		}
	case []any:
		for i := 0; i+1 < len(v); i += 2 {
			out[fmt.Sprint(v[i])] = fmt.Sprint(v[i+1])
		}
	default:
		return nil, fmt.Errorf("SENTINEL MASTER: unexpected reply %T", arr)
	}
	return out, nil
}

func waitUntil(t testing.TB, what string, cond func() error) {
	t.Helper()
	waitUntilFor(t, what, 20*time.Second, cond)
}

func waitUntilFor(t testing.TB, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: waiting for %s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
