package image

// Behaviour at the edges: per-call TTLs and stored constructor errors.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/tiered"
)

// Images may be stored with any number of distinct TTLs, each kept for its own TTL.
func TestImageManyDistinctTTLs(t *testing.T) {
	e := newCacheEnv(t, Options{})
	ctx := context.Background()
	const n = 100
	url := func(i int) string { return fmt.Sprintf("https://cdn.example.com/%d.png", i) }
	ttl := func(i int) time.Duration { return time.Duration(i+1) * time.Minute }
	for i := range n {
		require.NoError(t, e.ic.Set(ctx, url(i), pngBytes(64, byte(i)), "image/png", ttl(i)), "Set #%d with ttl %v", i+1, ttl(i))
	}
	for _, i := range []int{0, 63, 64, n - 1} {
		ms, err := e.s.Do("PTTL", redisKey(t, e.ic, url(i))).AsInt64()
		require.NoError(t, err)
		want := ttl(i).Milliseconds()
		require.LessOrEqual(t, ms, want, "image %d: stored with ttl %v", i, ttl(i))
		require.Greater(t, ms, want-30_000, "image %d: stored with ttl %v", i, ttl(i))
	}
	for i := range n {
		img, err := e.ic.Get(ctx, url(i))
		require.NoError(t, err, "image %d", i)
		require.Equal(t, pngBytes(64, byte(i)), img.Data, "image %d", i)
	}
}

// Constructor errors are stored and reported by Err.
func TestImageErr(t *testing.T) {
	require.ErrorIs(t, New(nil, Options{}).Err(), ErrInvalidOptions, "nil *tiered.Cache")

	e := newCacheEnv(t, Options{})
	require.NoError(t, e.ic.Err())
	require.ErrorIs(t, New(e.tc, Options{MaxImageBytes: -1}).Err(), ErrInvalidOptions, "negative MaxImageBytes")

	require.ErrorIs(t, newProxy(t, e.ic, ProxyOptions{}).Err(), ErrInvalidOptions, "empty AllowedHosts")
	require.NoError(t, newProxy(t, e.ic, ProxyOptions{AllowedHosts: []string{"cdn.example.com"}}).Err())
}

// A proxy TTL or max-age beyond tiered.MaxTTL is an option error, seen before the first
// request, rather than a proxy that silently caches nothing.
func TestProxyDurationsBeyondMaxTTL(t *testing.T) {
	e := newCacheEnv(t, Options{})
	for name, o := range map[string]ProxyOptions{
		"TTL":    {AllowedHosts: []string{"127.0.0.1"}, TTL: tiered.MaxTTL + time.Hour},
		"MaxAge": {AllowedHosts: []string{"127.0.0.1"}, MaxAge: tiered.MaxTTL + time.Hour},
	} {
		p := newProxy(t, e.ic, o)
		require.ErrorIs(t, p.Err(), ErrInvalidOptions, name)
		require.Contains(t, p.Err().Error(), name)
	}
}
