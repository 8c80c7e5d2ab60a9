package redistest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
)

// Without redis-server, the install hint is printed once per go test run: by the first test
// binary that needs a server, once, however many of its tests and of the run's other test
// binaries need one. The run's test binaries are this one, started again as children of one
// run (TIERCACHE_REDISTEST_RUN, as go test's children share their parent).
func TestInstallHintOncePerRun(t *testing.T) {
	if os.Getenv("REDISTEST_HINT_CHILD") != "" {
		t.Skip("the child's own copy of this test")
	}
	run := "hint-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Cleanup(func() { _ = os.Remove(filepath.Join(os.TempDir(), "tiercache-redistest-hint-"+run)) })
	child := func() string {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestNeedsAServer", "-test.count", "1")
		cmd.Env = append(withoutEnv("PATH", "REDIS_SERVER_BIN", "TIERCACHE_REDISTEST_RUN"),
			"PATH="+t.TempDir(), "TIERCACHE_REDISTEST_RUN="+run, "REDISTEST_HINT_CHILD=1")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "the child's tests fail without redis-server: %s", out)
		return string(out)
	}
	first, second := child(), child()
	assert.Equal(t, 1, strings.Count(first, redistest.InstallHint), "the run's first binary prints it once:\n%s", first)
	assert.Equal(t, 2, strings.Count(first, "printed once per go test run"), "and a short line for its other tests:\n%s", first)
	assert.Equal(t, 0, strings.Count(second, redistest.InstallHint), "the run's next binary does not:\n%s", second)
	assert.Equal(t, 3, strings.Count(second, "printed once per go test run"), second)
}

// Three tests that need a server, run only as TestInstallHintOncePerRun's children.
func TestNeedsAServerA(t *testing.T) { needsAServer(t) }
func TestNeedsAServerB(t *testing.T) { needsAServer(t) }
func TestNeedsAServerC(t *testing.T) { needsAServer(t) }

func needsAServer(t *testing.T) {
	if os.Getenv("REDISTEST_HINT_CHILD") == "" {
		t.Skip("run by TestInstallHintOncePerRun")
	}
	redistest.Start(t)
}

// withoutEnv is the environment without the named variables.
func withoutEnv(names ...string) []string {
	var out []string
next:
	for _, kv := range os.Environ() {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}
