package redistest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
)

func TestClusterTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster topology: skipped with -short")
	}
	c := redistest.StartCluster(t, redistest.WithReplicas(1))
	require.Len(t, c.Masters, 3)
	require.Len(t, c.Nodes(), 6)

	cl, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: c.Addrs(), DisableCache: true})
	require.NoError(t, err)
	defer cl.Close()
	ctx := context.Background()
	require.Equal(t, rueidis.ClientModeCluster, cl.Mode())
	require.NoError(t, cl.Do(ctx, cl.B().Set().Key("k").Value("v").Build()).Error())

	// Slot migration keeps the key.
	src := c.MasterOfKey("k")
	dst := c.Masters[0]
	if dst == src {
		dst = c.Masters[1]
	}
	c.MigrateKey("k", dst)
	require.Equal(t, dst, c.MasterOfKey("k"))
	v, err := cl.Do(ctx, cl.B().Get().Key("k").Build()).ToString()
	require.NoError(t, err)
	require.Equal(t, "v", v)

	// Coordinated failover, then a failover by kill.
	old := c.MasterOfKey("k")
	promoted := c.Failover(old)
	require.Equal(t, promoted, c.MasterOfKey("k"))
	require.Eventually(t, func() bool {
		v, err := cl.Do(ctx, cl.B().Get().Key("k").Build()).ToString()
		return err == nil && v == "v"
	}, 5*time.Second, 10*time.Millisecond)

	promoted2 := c.FailoverByKill(promoted)
	require.Equal(t, promoted2, c.MasterOfKey("k"))
	require.Eventually(t, func() bool {
		v, err := cl.Do(ctx, cl.B().Get().Key("k").Build()).ToString()
		return err == nil && v == "v"
	}, 10*time.Second, 10*time.Millisecond)
	promoted.Restart() // rejoins as a replica
	c.WaitSettled()
	require.Contains(t, c.URL(), ",")
}

func TestTLSServer(t *testing.T) {
	s := redistest.StartTLS(t)
	require.Equal(t, "PONG", mustString(t, s.Do("PING")))
	require.Error(t, dialErr(s.Addr()), "plain text to a TLS-only port")
}

func TestACLUser(t *testing.T) {
	s := redistest.Start(t)
	s.SetUser("app", "p@ss:/word", "~app:*", "+@all")
	opt, err := rueidis.ParseURL(s.UserURL("app", "p@ss:/word"))
	require.NoError(t, err)
	opt.DisableCache = true
	c, err := rueidis.NewClient(opt)
	require.NoError(t, err)
	defer c.Close()
	ctx := context.Background()
	require.NoError(t, c.Do(ctx, c.B().Set().Key("app:x").Value("1").Build()).Error())
	require.Error(t, c.Do(ctx, c.B().Set().Key("other").Value("1").Build()).Error())
}

func TestSentinelTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("sentinel topology: skipped with -short")
	}
	st := redistest.StartSentinel(t)
	addr, err := st.MasterAddr()
	require.NoError(t, err)
	require.Equal(t, st.Master.Addr(), addr)

	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: st.Addrs(), DisableCache: true,
		Sentinel: rueidis.SentinelOption{MasterSet: redistest.SentinelMasterName},
	})
	require.NoError(t, err)
	defer c.Close()
	ctx := context.Background()
	require.NoError(t, c.Do(ctx, c.B().Set().Key("k").Value("v").Build()).Error())

	st.Master.Stop()
	st.WaitMaster(st.Replica.Addr(), 15*time.Second)
	require.Eventually(t, func() bool {
		return c.Do(ctx, c.B().Set().Key("k").Value("w").Build()).Error() == nil
	}, 10*time.Second, 10*time.Millisecond)
}

// A replica refuses CLUSTER FAILOVER while it holds its master failing ("Master is down or
// failed", as on a loaded machine where a ping misses the node timeout): Failover asks again
// until the replica takes over.
func TestClusterFailoverWhileTheReplicaHoldsItsMasterFailing(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster topology: skipped with -short")
	}
	c := redistest.StartCluster(t, redistest.WithReplicas(1), redistest.WithClusterArgs("--enable-debug-command", "yes"))
	master := c.Masters[0]
	mid := c.ID(master)
	var replica *redistest.Server
	for _, s := range c.Nodes() {
		if s == master {
			continue
		}
		nodes, err := clusterNodes(s)
		require.NoError(t, err)
		for _, line := range strings.Split(nodes, "\n") {
			if f := strings.Fields(line); len(f) > 3 && strings.Contains(f[2], "myself") && f[3] == mid {
				replica = s
			}
		}
	}
	require.NotNil(t, replica)

	// The master stops answering for longer than the node timeout (1 s), until the masters
	// agree it has failed.
	sleeper, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{master.Addr()}, DisableCache: true, ForceSingleClient: true})
	require.NoError(t, err)
	defer sleeper.Close()
	slept := make(chan error, 1)
	go func() {
		slept <- sleeper.Do(context.Background(), sleeper.B().Arbitrary("DEBUG", "SLEEP").Args("3").Build()).Error()
	}()
	require.Eventually(t, func() bool {
		nodes, err := clusterNodes(replica)
		if err != nil {
			return false
		}
		for _, line := range strings.Split(nodes, "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[0] == mid {
				return strings.Contains(f[2], "fail") && !strings.Contains(f[2], "fail?") // FAIL, not PFAIL
			}
		}
		return false
	}, 8*time.Second, 20*time.Millisecond, "the replica never held its master failing")

	require.Equal(t, replica, c.Failover(master))
	require.NoError(t, <-slept)
}

// clusterNodes is s's CLUSTER NODES (RESP3 sends it as a verbatim string: "txt:" first).
func clusterNodes(s *redistest.Server) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	nodes, err := s.Client().Do(ctx, s.Client().B().ClusterNodes().Build()).ToString()
	return strings.TrimPrefix(nodes, "txt:"), err
}
