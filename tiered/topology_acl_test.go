package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/synspirit/tiercache/counter"
	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// aclRules is the least a cache user needs with KeyPrefix "synspirit:" (found by tightening
// until something failed; ACL LOG names what was denied): its keys and channels only, and
// the commands the cache, the bus and the counters send (EXISTS, GET, SET and INCRBY also
// run inside the counter scripts; CLUSTER SLOTS is rueidis's topology probe; SPUBLISH and
// SSUBSCRIBE are the bus on a cluster). The ~ pattern must cover KeyPrefix: CLIENT TRACKING
// BCAST PREFIX checks it.
var aclRules = []string{
	"~synspirit:*", "&synspirit:*",
	"+hello", "+auth", "+ping", "+client|setname", "+client|tracking", "+client|trackinginfo",
	"+cluster|slots", "+get", "+getrange", "+pttl", "+set", "+del", "+exists", "+strlen", "+incr", "+incrby", "+mget",
	"+evalsha", "+eval", "+publish", "+subscribe", "+spublish", "+ssubscribe",
}

// TestACLTopology runs two instances and counters as a restricted ACL user: everything
// works, on the user's own keys and channels only.
func TestACLTopology(t *testing.T) {
	s := redistest.Start(t)
	const user, pw = "tiercache", "S3cr3t-pw-7f1c"
	s.SetUser(user, pw, aclRules...)
	ctx := context.Background()
	newACLCache := func(mode tiered.InvalidationMode) *tiered.Cache {
		c, err := tiered.New(ctx, tiered.Options{ExactL1Stats: true, RedisURL: s.UserURL(user, pw), KeyPrefix: "synspirit:", Invalidation: mode})
		require.NoError(t, err, "ACL LOG: %s", aclLog(s))
		t.Cleanup(func() { require.NoError(t, c.Close()) })
		return c
	}
	defer func() {
		if t.Failed() {
			t.Logf("ACL LOG: %s", aclLog(s))
		}
	}()
	s.Do("ACL", "LOG", "RESET")
	for _, mode := range []tiered.InvalidationMode{tiered.Tracking, tiered.BusOnly} {
		t.Run(mode.String(), func(t *testing.T) {
			a, b := newACLCache(mode), newACLCache(mode)
			require.Equal(t, mode, a.Mode())
			ga := tiered.NewGroup[string](a, "data:acl", time.Minute)
			gb := tiered.NewGroup[string](b, "data:acl", time.Minute)
			requireSeen(t, ga, gb, a, "k", "v1")
			require.NoError(t, gb.Set(ctx, "k", "v2"))
			requireEventuallyValue(t, ga, "k", "v2")

			v, err := ga.GetOrLoad(ctx, "loaded", func(context.Context) (string, error) { return "from-db", nil })
			require.NoError(t, err)
			require.Equal(t, "from-db", v)
			requireEventuallyValue(t, gb, "loaded", "from-db")

			requireSeen(t, ga, gb, a, "d", "x")
			require.NoError(t, gb.Delete(ctx, "d"))
			require.Eventually(t, func() bool { _, err := ga.Get(ctx, "d"); return errors.Is(err, tiered.ErrNotFound) }, waitFor, tick)

			requireSeen(t, ga, gb, a, "k", "v3")
			require.NoError(t, gb.Clear(ctx))
			require.Eventually(t, func() bool { _, err := ga.Get(ctx, "k"); return errors.Is(err, tiered.ErrNotFound) }, waitFor, tick)

			flushes := a.Stats().Flushes
			require.NoError(t, b.Flush(ctx))
			require.Eventually(t, func() bool { return a.Stats().Flushes > flushes }, waitFor, tick)
			require.Zero(t, a.Stats().PublishErrors+b.Stats().PublishErrors)

			for _, opts := range []counter.Options{{KeyPrefix: "synspirit:"}, {KeyPrefix: "synspirit:", TTL: counter.DefaultCacheTTL}} {
				cnt := counter.New(a.Redis(), opts)
				k := counter.Key{Target: "article", ID: "1", Counter: "likes-" + mode.String()}
				n, err := cnt.GetOrLoad(ctx, k, func(context.Context) (int64, error) { return 5, nil })
				require.NoError(t, err)
				n2, err := cnt.Increment(ctx, k, 1)
				require.NoError(t, err)
				require.Equal(t, n+1, n2)
				_, err = cnt.Decrement(ctx, k, 1)
				require.NoError(t, err)
				require.NoError(t, cnt.Set(ctx, k, 9, time.Minute))
				m, err := cnt.GetMany(ctx, []counter.Key{k})
				require.NoError(t, err)
				require.Equal(t, int64(9), m[k])
				require.NoError(t, cnt.Delete(ctx, k))
			}
		})
	}
	// The user is confined to its prefix.
	c := newACLCache(tiered.Tracking)
	err := c.Redis().Do(ctx, c.Redis().B().Set().Key("other:k").Value("v").Build()).Error()
	require.ErrorContains(t, err, "NOPERM")
	require.Equal(t, "key other:k", aclLog(s), "nothing else was denied")
}

func TestACLWrongPassword(t *testing.T) {
	t.Cleanup(redistest.WaitClusterClientGoroutines) // a failed New leaves a delayed rueidis refresh
	s := redistest.Start(t)
	const user, pw, wrong = "tiercache", "S3cr3t-pw-7f1c", "Wr0ng-pw-92ab"
	s.SetUser(user, pw, aclRules...)
	core, logs := observer.New(zapcore.DebugLevel)
	for _, u := range []string{s.UserURL(user, wrong), s.UserURL(user, wrong, "protocol=2"), s.UserURL("nobody", wrong)} {
		for _, mode := range []tiered.InvalidationMode{tiered.Auto, tiered.BusOnly} {
			c, err := tiered.New(context.Background(), tiered.Options{ExactL1Stats: true, RedisURL: u, KeyPrefix: "synspirit:", Invalidation: mode, Logger: zap.New(core)})
			if c != nil {
				_ = c.Close()
			}
			require.Error(t, err)
			require.ErrorIs(t, err, tiered.ErrUnavailable)
			require.Contains(t, err.Error(), "authentication failed")
			require.NotContains(t, err.Error(), wrong)
			require.NotContains(t, err.Error(), pw)
			require.NotContains(t, err.Error(), u)
		}
	}
	for _, e := range logs.All() {
		line := e.Message + " " + fmt.Sprint(e.ContextMap())
		require.NotContains(t, line, wrong)
		require.NotContains(t, line, pw)
	}
}

func aclLog(s *redistest.Server) string {
	entries, err := s.Do("ACL", "LOG", "20").ToArray()
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, e := range entries {
		m, err := e.AsStrMap()
		if err != nil {
			continue
		}
		out = append(out, m["reason"]+" "+m["object"])
	}
	return strings.Join(out, "; ")
}
