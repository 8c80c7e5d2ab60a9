package tiered_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// Without tracking, an expiry that Redis decides (here after a PEXPIRE by someone else) is
// invisible to the bus; keyspace notifications report it.
func TestKeyspaceNotificationsDropExpiredKeys(t *testing.T) {
	s := redistest.Start(t)
	a := newCache(t, s, func(o *tiered.Options) {
		o.Invalidation = tiered.BusOnly
		o.KeyspaceNotifications = true
		o.ConfigureKeyspaceNotifications = true
	})
	flags, err := s.Do("CONFIG", "GET", "notify-keyspace-events").AsStrMap()
	require.NoError(t, err)
	require.Contains(t, flags["notify-keyspace-events"], "x")
	require.Contains(t, flags["notify-keyspace-events"], "E")

	g := tiered.NewGroup[string](a, "g", time.Hour)
	ctx := context.Background()
	require.NoError(t, g.Set(ctx, "k", "v"))
	warm(t, a, g, "k")
	s.Do("PEXPIRE", redisKey(t, g, "k"), "20")
	require.Eventually(t, func() bool { _, err := g.Get(ctx, "k"); return err != nil }, waitFor, tick)
	require.Positive(t, a.Stats().Invalidations.Keyspace)
}

// Listening needs no CONFIG rights; only configuring does, and only when asked.
func TestKeyspaceNotificationsWithoutConfigRights(t *testing.T) {
	s := redistest.Start(t)
	s.Do("ACL", "SETUSER", "app", "on", ">pw", "~t:*", "&*", "+@all", "-@admin", "-config")
	u := url.URL{Scheme: "redis", User: url.UserPassword("app", "pw"), Host: s.Addr(), Path: "/0"}
	listenOnly := func(o *tiered.Options) { o.RedisURL = u.String(); o.KeyspaceNotifications = true }
	newCache(t, s, listenOnly)

	_, err := tiered.New(context.Background(), tiered.Options{ExactL1Stats: true, RedisURL: u.String(), KeyPrefix: "t:",
		KeyspaceNotifications: true, ConfigureKeyspaceNotifications: true})
	require.Error(t, err, "configuring needs CONFIG SET, which this user lacks")
}
