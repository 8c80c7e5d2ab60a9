package tiered_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// TestTLSTopology runs two instances over TLS, with the CA given by option or by
// REDIS_TLS_CA_FILE, through rediss:// and the original ?ssl=true.
func TestTLSTopology(t *testing.T) {
	s := redistest.StartTLS(t)
	plain := "redis://" + s.Addr() + "/0?ssl=true"

	t.Run("option", func(t *testing.T) {
		for _, u := range []string{s.URL(), plain} {
			a := newTLSCache(t, u, s.ClientTLSConfig())
			b := newTLSCache(t, u, s.ClientTLSConfig())
			requireCoherent(t, a, b, "opt:"+u)
		}
	})
	t.Run("env", func(t *testing.T) {
		t.Setenv("REDIS_TLS_CA_FILE", s.CAFile)
		cfg, err := tiered.TLSConfigFromEnv()
		require.NoError(t, err)
		require.NotNil(t, cfg)
		for _, u := range []string{s.URL(), plain} {
			a := newTLSCache(t, u, cfg)
			b := newTLSCache(t, u, cfg)
			requireCoherent(t, a, b, "env:"+u)
		}
	})
}

func TestTLSConfigFromEnv(t *testing.T) {
	t.Setenv("REDIS_TLS_CA_FILE", "")
	cfg, err := tiered.TLSConfigFromEnv()
	require.NoError(t, err)
	require.Nil(t, cfg, "unset: the system roots")

	t.Setenv("REDIS_TLS_CA_FILE", filepath.Join(t.TempDir(), "missing.pem"))
	_, err = tiered.TLSConfigFromEnv()
	require.ErrorIs(t, err, tiered.ErrInvalidOptions)

	junk := filepath.Join(t.TempDir(), "junk.pem")
	require.NoError(t, os.WriteFile(junk, []byte("not a certificate"), 0o600))
	t.Setenv("REDIS_TLS_CA_FILE", junk)
	_, err = tiered.TLSConfigFromEnv()
	require.ErrorIs(t, err, tiered.ErrInvalidOptions)
	require.Contains(t, err.Error(), "no PEM certificate")
}

func TestTLSWrongCA(t *testing.T) {
	t.Cleanup(redistest.WaitClusterClientGoroutines) // a failed New leaves a delayed rueidis refresh
	s := redistest.StartTLS(t)
	other := redistest.NewCA(t)
	for _, u := range []string{s.URL(), "redis://" + s.Addr() + "/0?ssl=true"} {
		cfg := s.ClientTLSConfig()
		cfg.RootCAs = other.Pool
		start := time.Now()
		c, err := tiered.New(context.Background(), tiered.Options{ExactL1Stats: true, RedisURL: u, TLSConfig: cfg, KeyPrefix: "t:"})
		if c != nil {
			_ = c.Close()
		}
		require.Error(t, err)
		require.ErrorIs(t, err, tiered.ErrUnavailable)
		require.Contains(t, err.Error(), "certificate")
		var uae x509.UnknownAuthorityError
		require.True(t, errors.As(err, &uae), "%v", err)
		t.Logf("wrong CA, %s: %v (after %v)", u, err, time.Since(start).Round(time.Millisecond))
	}
	// No CA at all: the system roots do not know the test CA either.
	c, err := tiered.New(context.Background(), tiered.Options{ExactL1Stats: true, RedisURL: s.URL(), KeyPrefix: "t:"})
	if c != nil {
		_ = c.Close()
	}
	require.ErrorIs(t, err, tiered.ErrUnavailable)
	require.Contains(t, err.Error(), "certificate")
}

func TestTLSPlainTextToTLSOnlyServer(t *testing.T) {
	t.Cleanup(redistest.WaitClusterClientGoroutines)
	s := redistest.StartTLS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	c, err := tiered.New(ctx, tiered.Options{ExactL1Stats: true, RedisURL: "redis://" + s.Addr() + "/0", KeyPrefix: "t:"})
	if c != nil {
		_ = c.Close()
	}
	require.Error(t, err)
	require.ErrorIs(t, err, tiered.ErrUnavailable)
	require.Contains(t, err.Error(), "rediss://", "the error says what is probably wrong")
	require.Less(t, time.Since(start), 5*time.Second, "fails fast, not at a timeout")
	t.Logf("plain text to a TLS-only server: %v (after %v)", err, time.Since(start).Round(time.Millisecond))
}

func newTLSCache(t *testing.T, url string, cfg *tls.Config) *tiered.Cache {
	t.Helper()
	c, err := tiered.New(context.Background(), tiered.Options{ExactL1Stats: true, RedisURL: url, TLSConfig: cfg, KeyPrefix: "t:"})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c
}

// requireCoherent checks that a write through b is seen by a, which had the old value in L1.
func requireCoherent(t *testing.T, a, b *tiered.Cache, key string) {
	t.Helper()
	ctx := context.Background()
	key = strings.NewReplacer(" ", "_").Replace(key)
	ga := tiered.NewGroup[string](a, "tls", time.Minute)
	gb := tiered.NewGroup[string](b, "tls", time.Minute)
	require.NoError(t, gb.Set(ctx, key, "v1"))
	require.Eventually(t, func() bool {
		v, err := ga.Get(ctx, key)
		return err == nil && v == "v1" && l1Hit(a, func() { _, _ = ga.Get(ctx, key) })
	}, waitFor, tick)
	require.NoError(t, gb.Set(ctx, key, "v2"))
	require.Eventually(t, func() bool { v, err := ga.Get(ctx, key); return err == nil && v == "v2" }, waitFor, tick)
	require.Equal(t, tiered.Tracking, a.Stats().Mode)
}
