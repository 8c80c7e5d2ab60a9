package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
)

// The demo is run as a user runs it: built, then started with and without redis-server on
// PATH (and no REDIS_URL), and judged by its exit status and what it prints.

func buildDemo(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "demo")
	out, err := exec.Command("go", append(append([]string{"build"}, buildFlags...), "-o", bin, ".")...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// env is the test's environment without REDIS_URL, with PATH set to path.
func env(path string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REDIS_URL=") && !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "REDIS_SERVER_BIN=") {
			out = append(out, kv)
		}
	}
	return append(out, "PATH="+path)
}

func TestDemo(t *testing.T) {
	bin := buildDemo(t)
	redisBin, err := redistest.Binary()
	require.NoError(t, err)

	t.Run("OnARedisServer", func(t *testing.T) {
		cmd := exec.Command(bin)
		cmd.Env = env(filepath.Dir(redisBin))
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Contains(t, string(out), "a throwaway redis-server on 127.0.0.1:")
		assert.Contains(t, string(out), "invalidation: tracking")
		assert.Contains(t, string(out), "every step behaved as expected")
	})

	t.Run("WithoutRedisServerOnTheEmbeddedServer", func(t *testing.T) {
		cmd := exec.Command(bin)
		cmd.Env = env(t.TempDir()) // an empty PATH: no redis-server
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Contains(t, string(out), "running on an in-process Redis-protocol server (miniredis)")
		assert.Contains(t, string(out), "invalidation: bus-only")
		assert.Contains(t, string(out), "✓ write on A → B stops serving the old value")
		assert.NotContains(t, string(out), "✗")
		assert.Contains(t, string(out), "every step behaved as expected")
	})

	t.Run("WithoutRedisServerNotEmbeddedSaysHowInOneLine", func(t *testing.T) {
		cmd := exec.Command(bin, "-embedded=false")
		cmd.Env = env(t.TempDir())
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "%s", out)
		assert.Equal(t, 2, exit.ExitCode())
		assert.Equal(t, 1, strings.Count(strings.TrimSpace(string(out)), "\n")+1, "one line: %q", out)
		assert.Contains(t, string(out), "apt-get install -y redis-server")
	})
}
