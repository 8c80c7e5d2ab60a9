package tiered_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

type stringer struct{}

func (stringer) String() string { return "S" }

// The canonical encoding is a contract: keys written by one version, process or machine are
// read by every other. These golden values were computed independently of the Go code
// (sha256 of the documented encoding, e.g. b"s\x04listi2i20") and must never change.
func TestKeyIsStable(t *testing.T) {
	golden := []struct {
		args []any
		want string
	}{
		{nil, "e3b0c44298fc1c149afbf4c8996fb924"},
		{[]any{1, 10}, "7f39a37c0116c0e37c1e0cf375ec5050"},
		{[]any{"list", 2, 20}, "49c7efe2e72f597689a3c68af2e0985c"},
	}
	for _, g := range golden {
		got, err := tiered.MakeKey(g.args...)
		require.NoError(t, err)
		require.Equal(t, g.want, got, "key of %v", g.args)
	}
}

func TestKeyDistinguishesArgumentLists(t *testing.T) {
	lists := [][]any{
		{}, {nil}, {""}, {"a", "bc"}, {"ab", "c"}, {"abc"}, {1}, {"1"}, {uint(1)}, {1.5}, {true}, {"true"},
		{[]byte("a")}, {"a"}, {[]string{"a", "b"}}, {"a", "b"}, {[]any{1, 2}}, {1, 2}, {[]int{}}, {nil, nil},
		{time.Unix(0, 0)}, {time.Duration(0)}, {stringer{}}, {"S"}, {map[string]int{"a": 1}}, {struct{ A int }{1}},
	}
	seen := map[string]int{}
	for i, args := range lists {
		k, err := tiered.MakeKey(args...)
		require.NoError(t, err)
		if j, dup := seen[k]; dup {
			t.Fatalf("%#v and %#v share key %s", lists[j], args, k)
		}
		seen[k] = i
	}
	// Equal values of different integer widths are one key; -0 and +0 too.
	k1, _ := tiered.MakeKey(int8(7))
	k2, _ := tiered.MakeKey(int64(7))
	require.Equal(t, k1, k2)
	negZero := 0.0
	negZero = -negZero
	k1, _ = tiered.MakeKey(negZero)
	k2, _ = tiered.MakeKey(0.0)
	require.Equal(t, k1, k2)
	// Time zones do not matter, the instant does.
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	k1, _ = tiered.MakeKey(at)
	k2, _ = tiered.MakeKey(at.In(time.FixedZone("X", 3600)))
	require.Equal(t, k1, k2)
}

func TestKeyRejectsUnencodableArguments(t *testing.T) {
	_, err := tiered.MakeKey(make(chan int))
	require.Error(t, err)
}

func TestStatsHandler(t *testing.T) {
	s, a, g := warmKey(t, "v")
	ctx := context.Background()
	_, _ = g.Get(ctx, "missing")

	rec := httptest.NewRecorder()
	tiered.StatsHandler(a).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/cache-stats", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var body struct {
		tiered.Stats
		L1HitRatio float64           `json:"l1_hit_ratio"`
		Redis      *tiered.RedisInfo `json:"redis"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	require.Equal(t, tiered.Tracking, body.Mode)
	require.Equal(t, tiered.BreakerClosed, body.Breaker)
	require.Contains(t, rec.Body.String(), `"mode":"tracking"`)
	require.Contains(t, rec.Body.String(), `"breaker":"closed"`)
	require.Positive(t, body.L1Hits)
	require.Positive(t, body.L2Misses)
	require.EqualValues(t, 1, body.Sets)
	require.Greater(t, body.L1HitRatio, 0.0)
	require.NotNil(t, body.Redis)
	require.EqualValues(t, 2, body.Redis.Keys, "the value and its group's generation")
	require.Positive(t, body.Redis.UsedMemory)
	require.Positive(t, body.Redis.ConnectedClients)

	rec = httptest.NewRecorder()
	tiered.StatsHandler(a).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/cache-stats", nil))
	require.Equal(t, http.StatusMethodNotAllowed, rec.Code)

	s.Stop()
	rec = httptest.NewRecorder()
	tiered.StatsHandler(a).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/cache-stats", nil))
	require.Equal(t, http.StatusOK, rec.Code, "the counters are served while Redis is down")
	require.Contains(t, rec.Body.String(), "redis_error")
}

func TestL1HitDoesNotAllocate(t *testing.T) {
	s := redistest.Start(t)
	a := newCache(t, s)
	g := tiered.NewGroup[article](a, "g", time.Minute)
	ctx := context.Background()
	require.NoError(t, g.Set(ctx, "k", article{1, "one"}))
	warm(t, a, g, "k")
	load := func(context.Context) (article, error) { return article{}, nil }
	require.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = g.Get(ctx, "k") }), "Get")
	require.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = g.GetOrLoad(ctx, "k", load) }), "GetOrLoad")
}
