package redistest_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/synspirit/tiercache/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartStopRestart(t *testing.T) {
	s := redistest.Start(t)
	require.Equal(t, "PONG", mustString(t, s.Do("PING")))
	s.Do("SET", "k", "v")
	port := s.Port()

	s.Stop()
	require.False(t, s.Running())
	require.Error(t, dialErr(s.Addr()))

	s.Restart()
	require.True(t, s.Running())
	require.Equal(t, port, s.Port())
	require.Equal(t, "PONG", mustString(t, s.Do("PING")))
	require.True(t, rueidis.IsRedisNil(s.Do("GET", "k").Error()), "data does not survive a restart")
}

func TestKillClients(t *testing.T) {
	s := redistest.Start(t)
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.Addr()}, DisableCache: true, ForceSingleClient: true})
	require.NoError(t, err)
	defer c.Close()
	ctx := context.Background()
	require.NoError(t, c.Do(ctx, c.B().Ping().Build()).Error())
	require.GreaterOrEqual(t, s.KillClients("TYPE", "normal"), int64(1))
	// rueidis reconnects by itself.
	require.Eventually(t, func() bool { return c.Do(ctx, c.B().Ping().Build()).Error() == nil }, 5*time.Second, 10*time.Millisecond)
}

func TestTwoServersHaveDistinctPorts(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	require.NotEqual(t, a.Port(), b.Port())
}

func mustString(t *testing.T, r rueidis.RedisResult) string {
	t.Helper()
	v, err := r.ToString()
	require.NoError(t, err)
	return v
}

func dialErr(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true, DisableRetry: true})
	if err == nil {
		err = c.Do(ctx, c.B().Ping().Build()).Error()
		c.Close()
	}
	return err
}
