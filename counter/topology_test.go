package counter

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// TestClusterTopology runs counters on a 3-master cluster through the client of a Cache
// made from redis://a,b,c: every operation, and GetMany over keys of every master.
func TestClusterTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster topology: skipped with -short")
	}
	cl := redistest.StartCluster(t)
	ctx := context.Background()
	cache, err := tiered.New(ctx, tiered.Options{RedisURL: cl.URL(), KeyPrefix: "synspirit:", Timeout: time.Second})
	require.NoError(t, err)
	defer cache.Close()
	require.Equal(t, rueidis.ClientModeCluster, cache.Redis().Mode())

	for _, opts := range []Options{
		{KeyPrefix: "synspirit:"},                       // persistent
		{KeyPrefix: "synspirit:", TTL: DefaultCacheTTL}, // cache mode: scripts
	} {
		c := New(cache.Redis(), opts)
		keys := make([]Key, 60)
		want := map[Key]int64{}
		masters := map[string]bool{}
		for i := range keys {
			keys[i] = Key{"article", strconv.Itoa(i) + "-" + strconv.FormatBool(opts.TTL > 0), "likes"}
			masters[cl.MasterOfKey(rkey(t, c, keys[i])).Addr()] = true
			if i%4 == 0 {
				continue // missing
			}
			n, err := c.GetOrLoad(ctx, keys[i], func(context.Context) (int64, error) { return int64(i), nil })
			require.NoError(t, err)
			require.Equal(t, int64(i), n)
			n, err = c.Increment(ctx, keys[i], 2)
			require.NoError(t, err)
			require.Equal(t, int64(i+2), n)
			n, err = c.Decrement(ctx, keys[i], 1)
			require.NoError(t, err)
			want[keys[i]] = n
		}
		require.Len(t, masters, 3, "the keys span every master")
		got, err := c.GetMany(ctx, keys)
		require.NoError(t, err)
		assert.Equal(t, want, got)

		require.NoError(t, c.Set(ctx, keys[1], 100, time.Minute))
		n, err := c.Get(ctx, keys[1], -1)
		require.NoError(t, err)
		require.Equal(t, int64(100), n)
		require.NoError(t, c.Delete(ctx, keys[1:4]...))
		got, err = c.GetMany(ctx, keys[:5])
		require.NoError(t, err)
		assert.Empty(t, got, "keys 0 and 4 were never set, 1 to 3 are deleted")
	}
}
