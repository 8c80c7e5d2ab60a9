package bus_test

import (
	"testing"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/bus"
	"github.com/synspirit/tiercache/internal/redistest"
)

// TestClusterTopology runs the bus on a cluster (sharded pub/sub), and fails over the master
// that serves the channel's slot: the subscription moves to the new master, OnReset fires,
// and messages flow again.
func TestClusterTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster topology: skipped with -short")
	}
	cl := redistest.StartCluster(t, redistest.WithReplicas(1))
	newClusterClient := func() rueidis.Client {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: cl.Addrs()})
		require.NoError(t, err)
		t.Cleanup(c.Close)
		return c
	}
	const channel = "synspirit:tiercache:invalidate"
	var ra, rb recorder
	a := newBus(t, newClusterClient(), channel, &ra)
	b := newBus(t, newClusterClient(), channel, &rb)
	publish(t, a, bus.Message{Keys: []string{"k1"}})
	require.Eventually(t, func() bool { return rb.has("k1") }, waitFor, tick)
	publish(t, b, bus.Message{Groups: []string{"g"}})
	require.Eventually(t, func() bool { return len(ra.messages()) == 1 }, waitFor, tick)

	t.Run("failover of the channel's master", func(t *testing.T) {
		owner := cl.MasterOfKey(channel) // a shard channel lives in its name's slot
		cl.Failover(owner)
		require.Eventually(t, func() bool { return ra.resets.Load() > 0 && rb.resets.Load() > 0 }, waitFor, tick,
			"a moved shard channel is a resubscription: messages may have been lost")
		requireFlows(t, a, &rb, "k2")
		requireFlows(t, b, &ra, "k3")

		// The subscription may now sit on either node of the shard (Redis lets a replica
		// serve SSUBSCRIBE): after a kill of the master, messages must flow again either way.
		cl.FailoverByKill(cl.MasterOfKey(channel))
		requireFlows(t, a, &rb, "k4")
		requireFlows(t, b, &ra, "k5")
	})
}
