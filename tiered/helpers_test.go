package tiered_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitFor, tick = time.Second, time.Millisecond

func newCache(t testing.TB, s *redistest.Server, mod ...func(*tiered.Options)) *tiered.Cache {
	t.Helper()
	return newCacheAt(t, s.URL(), mod...)
}

// newCacheAt is newCache of the Redis at url (a cluster's, a user's).
func newCacheAt(t testing.TB, url string, mod ...func(*tiered.Options)) *tiered.Cache {
	t.Helper()
	o := tiered.Options{RedisURL: url, KeyPrefix: "t:", BreakerCooldown: 50 * time.Millisecond, ExactL1Stats: true}
	for _, f := range mod {
		f(&o)
	}
	c, err := tiered.New(context.Background(), o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c
}

type article struct {
	ID    int    `json:"id"`
	Title string `json:"title"`
}

// warmKey starts a Redis and a cache whose group "g" holds key "k" = v in L1 as well.
func warmKey(t *testing.T, v string) (*redistest.Server, *tiered.Cache, *tiered.Group[string]) {
	t.Helper()
	s := redistest.Start(t)
	c := newCache(t, s)
	g := tiered.NewGroup[string](c, "g", time.Minute)
	require.NoError(t, g.Set(context.Background(), "k", v))
	warm(t, c, g, "k")
	return s, c, g
}

// l1Hit runs fn and reports whether it was served from L1 (the L1 hit counter moved).
func l1Hit(c *tiered.Cache, fn func()) bool {
	before := c.Stats().L1Hits
	fn()
	return c.Stats().L1Hits > before
}

type redisKeyer interface {
	RedisKey(ctx context.Context, key string) (string, error)
}

func redisKey(t testing.TB, g redisKeyer, key string) string {
	t.Helper()
	k, err := g.RedisKey(context.Background(), key)
	require.NoError(t, err)
	return k
}

// reliability appends a result line for RELIABILITY.md when RELIABILITY_OUT names a file
// (see internal/cmd/reliability).
func reliability(t testing.TB, name string, figures map[string]any) {
	t.Helper()
	out := os.Getenv("RELIABILITY_OUT")
	if out == "" {
		return
	}
	line, err := json.Marshal(map[string]any{"test": name, "figures": figures})
	require.NoError(t, err)
	f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Write(append(line, '\n'))
	require.NoError(t, err)
}

// loadAllAs is a batch loader that finds every key, with value v.
func loadAllAs(v string) func(context.Context, []string) (map[string]string, error) {
	return loadAllAsAfter(nil, v)
}

// loadAllAsAfter is loadAllAs that first calls before, if not nil: a write made while the
// loader runs, or a wait.
func loadAllAsAfter(before func(), v string) func(context.Context, []string) (map[string]string, error) {
	return func(_ context.Context, missing []string) (map[string]string, error) {
		if before != nil {
			before()
		}
		out := make(map[string]string, len(missing))
		for _, m := range missing {
			out[m] = v
		}
		return out, nil
	}
}
