package redistest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// Cluster is a Redis Cluster of real redis-server processes on loopback: masters that own
// the 16384 slots in equal ranges, and optionally replicas of each.
type Cluster struct {
	t       testing.TB
	Masters []*Server // in slot order at start-up: Masters[0] owns the first range
	// Replicas[i] are the replicas of Masters[i] at start-up (a failover swaps roles
	// without reordering these slices).
	Replicas [][]*Server
	ids      map[*Server]string // cluster node IDs
}

// ClusterOption changes a cluster at creation.
type ClusterOption func(*clusterConfig)

type clusterConfig struct {
	masters, replicas int
	args              []string
}

// WithMasters sets the number of masters (default 3).
func WithMasters(n int) ClusterOption { return func(c *clusterConfig) { c.masters = n } }

// WithReplicas gives every master n replicas (default 0).
func WithReplicas(n int) ClusterOption { return func(c *clusterConfig) { c.replicas = n } }

// WithClusterArgs passes extra redis-server arguments to every node.
func WithClusterArgs(args ...string) ClusterOption {
	return func(c *clusterConfig) { c.args = append(c.args, args...) }
}

// clusterSettleTimeout bounds every wait for the nodes to agree on the slot map.
const clusterSettleTimeout = 20 * time.Second

// StartCluster starts a cluster (3 masters by default) built with CLUSTER ADDSLOTSRANGE,
// CLUSTER MEET and CLUSTER REPLICATE, and returns once every node reports
// cluster_state:ok and sees the same full slot map. Every node is stopped by t.Cleanup.
func StartCluster(t testing.TB, opts ...ClusterOption) *Cluster {
	t.Helper()
	cfg := clusterConfig{masters: 3}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.masters < 1 || cfg.replicas < 0 {
		t.Fatalf("redistest: cluster of %d masters with %d replicas each", cfg.masters, cfg.replicas)
	}
	args := append([]string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", "1000",
		"--cluster-replica-validity-factor", "0", // a replica may always take over
		"--cluster-allow-reads-when-down", "no",
	}, cfg.args...)
	// First registered, so it runs last: after the test's clients and the nodes are gone.
	t.Cleanup(WaitClusterClientGoroutines)
	c := &Cluster{t: t, ids: map[*Server]string{}}
	start := func() *Server {
		s := Start(t, WithArgs(args...))
		id, err := s.Do("CLUSTER", "MYID").ToString()
		if err != nil {
			t.Fatalf("redistest: CLUSTER MYID: %v", err)
		}
		c.ids[s] = id
		return s
	}
	for i := 0; i < cfg.masters; i++ {
		c.Masters = append(c.Masters, start())
		var rs []*Server
		for j := 0; j < cfg.replicas; j++ {
			rs = append(rs, start())
		}
		c.Replicas = append(c.Replicas, rs)
	}
	per := 16384 / cfg.masters
	for i, m := range c.Masters {
		lo, hi := i*per, (i+1)*per-1
		if i == cfg.masters-1 {
			hi = 16383
		}
		m.Do("CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi))
	}
	first := c.Masters[0]
	for _, s := range c.Nodes()[1:] {
		s.Do("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(first.Port()))
	}
	// A replica can only be attached once it knows its master. It meets its master itself
	// too, again at every try: on a loaded machine a handshake through the first node can
	// time out, and then the replica would never hear of its master.
	for i, rs := range c.Replicas {
		for _, r := range rs {
			m := c.Masters[i]
			mid := c.ids[m]
			c.waitFor("replica to know its master", func() error {
				if err := tryDo(r, "CLUSTER", "REPLICATE", mid); err != nil {
					_ = tryDo(r, "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(m.Port()))
					return err
				}
				return nil
			})
		}
	}
	c.WaitSettled()
	return c
}

// Nodes are every node, masters first.
func (c *Cluster) Nodes() []*Server {
	nodes := append([]*Server(nil), c.Masters...)
	for _, rs := range c.Replicas {
		nodes = append(nodes, rs...)
	}
	return nodes
}

// Addrs are the host:port of the masters at start-up.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, m := range c.Masters {
		a = append(a, m.Addr())
	}
	return a
}

// URL is redis://a,b,c/0 over the start-up masters, with extra query parameters as given.
func (c *Cluster) URL(query ...string) string {
	u := "redis://" + strings.Join(c.Addrs(), ",")
	if len(query) > 0 {
		u += "?" + strings.Join(query, "&")
	}
	return u
}

// ID is a node's cluster node ID.
func (c *Cluster) ID(s *Server) string { return c.ids[s] }

// Slot is the hash slot of key (CLUSTER KEYSLOT).
func (c *Cluster) Slot(key string) int {
	c.t.Helper()
	n, err := c.anyNode().Do("CLUSTER", "KEYSLOT", key).AsInt64()
	if err != nil {
		c.t.Fatalf("redistest: CLUSTER KEYSLOT: %v", err)
	}
	return int(n)
}

// MasterOf is the node that serves slot now, according to the first running node.
func (c *Cluster) MasterOf(slot int) *Server {
	c.t.Helper()
	owners, err := c.slotOwners(c.anyNode())
	if err != nil {
		c.t.Fatalf("redistest: %v", err)
	}
	return c.byPort(owners[slot])
}

// MasterOfKey is MasterOf(Slot(key)).
func (c *Cluster) MasterOfKey(key string) *Server { return c.MasterOf(c.Slot(key)) }

// Failover makes the first running replica of master take its place with CLUSTER FAILOVER
// (a coordinated switch: no write is lost) and waits until every running node agrees.
// It returns the new master.
func (c *Cluster) Failover(master *Server) *Server {
	c.t.Helper()
	r := c.replicaOf(master)
	// A replica refuses while it holds its master failing ("Master is down or failed": on a
	// loaded machine a ping can miss the 1 s node timeout) and abandons a manual failover the
	// master does not answer in time (5 s, Redis's CLUSTER_MF_TIMEOUT): ask again, at once
	// after a refusal, 5 s after an accepted request.
	var asked time.Time
	ask := func() {
		if err := tryDo(r, "CLUSTER", "FAILOVER"); err == nil {
			asked = time.Now()
		}
	}
	ask()
	return c.waitPromotedRetrying(r, "replica promoted", func() {
		if time.Since(asked) > 5*time.Second {
			ask()
		}
	})
}

// FailoverByKill kills master (SIGKILL), waits until a replica is elected in its place and
// every running node agrees, and returns the new master. The old master stays down: Restart
// it to bring it back (as a replica).
func (c *Cluster) FailoverByKill(master *Server) *Server {
	c.t.Helper()
	r := c.replicaOf(master)
	master.Stop()
	return c.waitPromotedRetrying(r, "replica elected", func() {})
}

// waitPromotedRetrying waits until r reports the master role and every running node agrees,
// calling retry between checks while it does not.
func (c *Cluster) waitPromotedRetrying(r *Server, what string, retry func()) *Server {
	c.t.Helper()
	c.waitFor(what, func() error {
		role, err := r.Do("ROLE").ToArray()
		if err != nil {
			return err
		}
		if s, _ := role[0].ToString(); s != "master" {
			retry()
			return fmt.Errorf("role %s", s)
		}
		return nil
	})
	c.WaitSettled()
	return r
}

func (c *Cluster) replicaOf(master *Server) *Server {
	c.t.Helper()
	mid := c.ids[master]
	for _, s := range c.Nodes() {
		if s == master || !s.Running() {
			continue
		}
		info := infoField(s, "replication", "role")
		if info != "slave" {
			continue
		}
		nodes, err := text(s.Do("CLUSTER", "NODES"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(nodes, "\n") {
			f := strings.Fields(line)
			if len(f) > 3 && strings.Contains(f[2], "myself") && f[3] == mid {
				return s
			}
		}
	}
	c.t.Fatalf("redistest: node %s has no running replica", master.Addr())
	return nil
}

// MigrateSlot moves slot, with its keys, to node dst: CLUSTER SETSLOT IMPORTING on dst,
// MIGRATING on the owner, MIGRATE of every key, then SETSLOT NODE on every master. It returns
// once every running node agrees.
func (c *Cluster) MigrateSlot(slot int, dst *Server) {
	c.t.Helper()
	src := c.MasterOf(slot)
	if src == dst {
		return
	}
	ss := strconv.Itoa(slot)
	dst.Do("CLUSTER", "SETSLOT", ss, "IMPORTING", c.ids[src])
	src.Do("CLUSTER", "SETSLOT", ss, "MIGRATING", c.ids[dst])
	for {
		keys, err := src.Do("CLUSTER", "GETKEYSINSLOT", ss, "100").AsStrSlice()
		if err != nil {
			c.t.Fatalf("redistest: CLUSTER GETKEYSINSLOT: %v", err)
		}
		if len(keys) == 0 {
			break
		}
		args := append([]string{"MIGRATE", "127.0.0.1", strconv.Itoa(dst.Port()), "", "0", "5000", "KEYS"}, keys...)
		src.Do(args...)
	}
	// The destination first, then the source, then the others (the documented order).
	dst.Do("CLUSTER", "SETSLOT", ss, "NODE", c.ids[dst])
	src.Do("CLUSTER", "SETSLOT", ss, "NODE", c.ids[dst])
	for _, s := range c.Nodes() {
		if s != src && s != dst && s.Running() && infoField(s, "replication", "role") == "master" {
			s.Do("CLUSTER", "SETSLOT", ss, "NODE", c.ids[dst])
		}
	}
	c.waitFor("slot migrated", func() error {
		for _, s := range c.running() {
			owners, err := c.slotOwners(s)
			if err != nil {
				return err
			}
			if owners[slot] != dst.Port() {
				return fmt.Errorf("%s sees slot %d on port %d", s.Addr(), slot, owners[slot])
			}
		}
		return nil
	})
}

// MigrateKey moves the slot of key to dst (see MigrateSlot).
func (c *Cluster) MigrateKey(key string, dst *Server) { c.MigrateSlot(c.Slot(key), dst) }

// WaitSettled waits until every running node reports cluster_state:ok, and sees all 16384
// slots served by the same masters as every other running node, each with as many replicas
// as are running.
func (c *Cluster) WaitSettled() {
	c.t.Helper()
	c.waitFor("cluster to settle", func() error {
		var ref map[int]int
		var refNode string
		for _, s := range c.running() {
			if st := field(s, "cluster_state", "CLUSTER", "INFO"); st != "ok" {
				return fmt.Errorf("%s: cluster_state:%s", s.Addr(), st)
			}
			owners, err := c.slotOwners(s)
			if err != nil {
				return fmt.Errorf("%s: %w", s.Addr(), err)
			}
			if ref == nil {
				ref, refNode = owners, s.Addr()
				continue
			}
			for slot, port := range ref {
				if owners[slot] != port {
					return fmt.Errorf("%s and %s disagree on slot %d", s.Addr(), refNode, slot)
				}
			}
			if err := c.nodesSettled(s); err != nil {
				return err
			}
		}
		return nil
	})
}

// slotOwners maps every slot to the port of its master as node s sees it (CLUSTER SLOTS),
// and fails unless all 16384 slots are covered.
func (c *Cluster) slotOwners(s *Server) (map[int]int, error) {
	ranges, err := s.Do("CLUSTER", "SLOTS").ToArray()
	if err != nil {
		return nil, err
	}
	owners := make(map[int]int, 16384)
	for _, r := range ranges {
		f, err := r.ToArray()
		if err != nil || len(f) < 3 {
			return nil, errors.New("malformed CLUSTER SLOTS reply")
		}
		lo, _ := f[0].AsInt64()
		hi, _ := f[1].AsInt64()
		node, _ := f[2].ToArray()
		if len(node) < 2 {
			return nil, errors.New("malformed CLUSTER SLOTS node")
		}
		port, _ := node[1].AsInt64()
		for i := lo; i <= hi; i++ {
			owners[int(i)] = int(port)
		}
	}
	if len(owners) != 16384 {
		return nil, fmt.Errorf("%d of 16384 slots covered", len(owners))
	}
	return owners, nil
}

func (c *Cluster) running() []*Server {
	var r []*Server
	for _, s := range c.Nodes() {
		if s.Running() {
			r = append(r, s)
		}
	}
	return r
}

func (c *Cluster) anyNode() *Server {
	c.t.Helper()
	if r := c.running(); len(r) > 0 {
		return r[0]
	}
	c.t.Fatal("redistest: no cluster node is running")
	return nil
}

func (c *Cluster) byPort(port int) *Server {
	if s := c.findPort(port); s != nil {
		return s
	}
	c.t.Fatalf("redistest: no node on port %d", port)
	return nil
}

func (c *Cluster) waitFor(what string, cond func() error) {
	c.t.Helper()
	deadline := time.Now().Add(clusterSettleTimeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("redistest: waiting for %s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// infoField is one field of INFO section on s, "" if absent.
func infoField(s *Server, section, name string) string { return field(s, name, "INFO", section) }

// field is one name:value field of the reply to a command like INFO or CLUSTER INFO.
func field(s *Server, name string, cmd ...string) string {
	txt, err := text(s.Do(cmd...))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(txt, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// nodesSettled checks that s sees every running node connected, without a failure or
// handshake flag.
func (c *Cluster) nodesSettled(s *Server) error {
	nodes, err := text(s.Do("CLUSTER", "NODES"))
	if err != nil {
		return err
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		hostport, _, _ := strings.Cut(f[1], "@")
		_, p, _ := strings.Cut(hostport, ":")
		port, _ := strconv.Atoi(p)
		n := c.findPort(port)
		if n == nil || !n.Running() {
			continue
		}
		seen++
		if strings.Contains(f[2], "fail") || strings.Contains(f[2], "handshake") || strings.Contains(f[2], "noaddr") || f[7] != "connected" {
			return fmt.Errorf("%s sees %s as %s %s", s.Addr(), hostport, f[2], f[7])
		}
	}
	if want := len(c.running()); seen != want {
		return fmt.Errorf("%s sees %d of %d running nodes", s.Addr(), seen, want)
	}
	return nil
}

func (c *Cluster) findPort(port int) *Server {
	for _, s := range c.Nodes() {
		if s.Port() == port {
			return s
		}
	}
	return nil
}

// tryDo runs one command on s's admin client and returns its error.
func tryDo(s *Server, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl := s.Client()
	return cl.Do(ctx, cl.B().Arbitrary(args[0]).Args(args[1:]...).Build()).Error()
}

// text is a string or verbatim-string reply (RESP3 sends INFO and CLUSTER NODES as verbatim
// strings, which ToString refuses).
func text(res rueidis.RedisResult) (string, error) {
	v, err := res.ToAny()
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("reply is %T, not a string", v)
	}
	return strings.TrimPrefix(s, "txt:"), nil // the verbatim string's format
}

// WaitClusterClientGoroutines waits (at most 10 s) until no delayed rueidis goroutine is
// left. rueidis v1.0.79 leaves two kinds behind a closed client, both bounded in time and
// both reported by goleak: after a topology change it closes the replaced connections from
// a goroutine that sleeps 5 s first, and a client whose first connection failed (NewClient
// tries cluster mode first) can leave a delayed refresh sleeping for up to a second.
func WaitClusterClientGoroutines() {
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 1<<20)
	for time.Now().Before(deadline) {
		n := runtime.Stack(buf, true)
		stacks := string(buf[:n])
		if !strings.Contains(stacks, "rueidis.(*clusterClient)._refresh") && !strings.Contains(stacks, "rueidis.(*call).DelayDo") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
