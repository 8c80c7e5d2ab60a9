package main

import (
	"flag"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
)

// Two instances on the demo's in-process server: A starts it, B finds it, and a write
// through one is seen through the other (bus-only).
func TestWebappOnTheEmbeddedServer(t *testing.T) {
	bin := buildWebapp(t)
	port, err := redistest.FreePort()
	require.NoError(t, err)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{"-db", filepath.Join(t.TempDir(), "site.db"), "-embedded-redis", addr}
	a := startWebapp(t, bin, "A", nil, args...)
	a.waitReady(t)
	b := startWebapp(t, bin, "B", nil, args...)
	b.waitReady(t)

	var s cacheStats
	b.getJSON(t, "/api/cache-stats", http.StatusOK, &s)
	assert.Equal(t, "bus-only", s.Mode)

	var old articleView
	b.getJSON(t, "/api/articles/3", http.StatusOK, &old)
	before := b.dbQueries(t)
	b.getJSON(t, "/api/articles/3", http.StatusOK, &old)
	require.Equal(t, before, b.dbQueries(t), "B serves article 3 from its cache")

	a.doJSON(t, http.MethodPut, "/api/articles/3", `{"title":"Edited on the embedded server"}`, http.StatusOK, &Article{})
	require.Eventually(t, func() bool {
		var v articleView
		b.getJSON(t, "/api/articles/3", http.StatusOK, &v)
		return v.Title == "Edited on the embedded server"
	}, time.Second, 5*time.Millisecond, "B still serves the old title a second after the update")
}

// -help prints the usage and exits 0.
func TestWebappHelp(t *testing.T) {
	_, err := parseConfig([]string{"-help"})
	require.ErrorIs(t, err, flag.ErrHelp)
	out, err := exec.Command(buildWebapp(t), "-help").CombinedOutput()
	require.NoError(t, err, "exit status of -help: %s", out)
	assert.Contains(t, string(out), "-embedded-redis")
}
