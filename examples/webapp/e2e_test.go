package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/synspirit/tiercache/internal/redistest"
)

// The end-to-end test builds the webapp binary and runs two instances of it, as two servers
// of one site would run: one Redis, one SQLite file, two processes on loopback ports. It
// checks over HTTP what the site relies on: cached reads spare the database, writes are seen
// by the other instance, likes add up, and the API keeps answering when Redis dies.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestWebappEndToEnd(t *testing.T) {
	redis := redistest.Start(t)
	bin := buildWebapp(t)
	dir := t.TempDir()
	origin, originHits := imageOrigin(t)
	originURL, err := url.Parse(origin.URL)
	require.NoError(t, err)

	env := []string{"REDIS_URL=" + redis.URL(), "CACHE_KEY_PREFIX=e2e:", "CACHE_DEFAULT_TIMEOUT=300"}
	args := []string{"-db", filepath.Join(dir, "site.db"), "-image-hosts", originURL.Host, "-image-allow-private",
		"-redis-timeout", "500ms"} // generous (CI runs every package under -race at once), yet each call to a dead Redis costs it
	a := startWebapp(t, bin, "A", env, args...)
	b := startWebapp(t, bin, "B", env, args...)
	a.waitReady(t)
	b.waitReady(t)

	t.Run("ListPageColdThenWarm", func(t *testing.T) {
		before := a.dbQueries(t) + b.dbQueries(t)
		var first, second, third articlePage
		a.getJSON(t, "/api/articles?page=2&per_page=7", http.StatusOK, &first)
		cold := a.dbQueries(t) + b.dbQueries(t) - before
		b.getJSON(t, "/api/articles?page=2&per_page=7", http.StatusOK, &second)
		a.getJSON(t, "/api/articles?page=2&per_page=7", http.StatusOK, &third)
		require.Len(t, first.Articles, 7)
		for _, art := range first.Articles {
			require.NotZero(t, art.ID)
			require.Equal(t, art.AuthorID, art.Author.ID, "article %d comes with its author", art.ID)
			require.NotEmpty(t, art.Author.Name)
		}
		assert.Equal(t, first, second, "B serves what A loaded")
		assert.Equal(t, first, third)
		assert.Equal(t, int64(3), cold, "a cold page: its IDs, its 7 articles and their authors, one query each")
		assert.Equal(t, int64(3), a.dbQueries(t)+b.dbQueries(t)-before, "the warm page on either instance: no query")

		// A page that overlaps the first: only the articles and authors not yet cached are loaded.
		before = a.dbQueries(t) + b.dbQueries(t)
		var overlap articlePage
		b.getJSON(t, "/api/articles?page=1&per_page=14", http.StatusOK, &overlap)
		require.Len(t, overlap.Articles, 14)
		assert.Equal(t, first.Articles, overlap.Articles[7:], "page 2 of 7 is the second half of page 1 of 14")
		assert.LessOrEqual(t, a.dbQueries(t)+b.dbQueries(t)-before, int64(3))
	})

	t.Run("MissingArticleIsACachedMiss", func(t *testing.T) {
		before := a.dbQueries(t) + b.dbQueries(t)
		for i := range 100 {
			in := []*webapp{a, b}[i%2]
			status, body := in.do(t, http.MethodGet, "/api/articles/999999", "")
			require.Equal(t, http.StatusNotFound, status, "request %d through %s: %s", i, in.name, body)
		}
		assert.Equal(t, int64(1), a.dbQueries(t)+b.dbQueries(t)-before, "100 requests of a missing article on two instances, one query")
	})

	t.Run("CreatedArticleReplacesTheCachedMissOfItsID", func(t *testing.T) {
		var newest articlePage
		a.getJSON(t, "/api/articles?page=1&per_page=1", http.StatusOK, &newest)
		require.Len(t, newest.Articles, 1)
		next := newest.Articles[0].ID + 1 // SQLite gives the next row this ID
		for _, in := range []*webapp{a, b} {
			status, body := in.do(t, http.MethodGet, "/api/articles/"+strconv.FormatInt(next, 10), "")
			require.Equal(t, http.StatusNotFound, status, "%s", body)
		}
		var created Article
		a.doJSON(t, http.MethodPost, "/api/articles", `{"title":"Fresh","body":"New.","author_id":2}`, http.StatusCreated, &created)
		require.Equal(t, next, created.ID)
		for _, in := range []*webapp{a, b} {
			require.Eventually(t, func() bool {
				status, _ := in.do(t, http.MethodGet, "/api/articles/"+strconv.FormatInt(next, 10), "")
				return status == http.StatusOK
			}, time.Second, 5*time.Millisecond, "%s still answers 404 for the created article", in.name)
			var p articlePage
			in.getJSON(t, "/api/articles?page=1&per_page=1", http.StatusOK, &p)
			require.Len(t, p.Articles, 1)
			assert.Equal(t, next, p.Articles[0].ID, "%s lists the created article first", in.name)
		}
	})

	t.Run("UpdateThroughAIsVisibleThroughBWithinOneSecond", func(t *testing.T) {
		var old articleView
		b.getJSON(t, "/api/articles/5", http.StatusOK, &old)
		before := b.dbQueries(t)
		b.getJSON(t, "/api/articles/5", http.StatusOK, &old)
		require.Equal(t, before, b.dbQueries(t), "B serves article 5 from its cache before the update")

		title := "Edited through A at " + time.Now().Format(time.RFC3339Nano)
		var updated Article
		a.doJSON(t, http.MethodPut, "/api/articles/5", `{"title":`+strconv.Quote(title)+`}`, http.StatusOK, &updated)
		require.Equal(t, title, updated.Title)
		require.Equal(t, old.Body, updated.Body, "PUT without a body keeps it")

		require.Eventually(t, func() bool {
			var v articleView
			b.getJSON(t, "/api/articles/5", http.StatusOK, &v)
			return v.Title == title
		}, time.Second, 5*time.Millisecond, "B still serves the old title a second after the update")
		// The list pages that show it were dropped on every instance too.
		require.Eventually(t, func() bool {
			var p articlePage
			b.getJSON(t, "/api/articles?page=1&per_page=50", http.StatusOK, &p)
			for _, art := range p.Articles {
				if art.ID == 5 {
					return art.Title == title
				}
			}
			return false
		}, time.Second, 5*time.Millisecond, "B's article list still has the old title a second after the update")
	})

	t.Run("EditDropsOnlyTheListPagesThatShowIt", func(t *testing.T) {
		const shows, other = "/api/articles?page=2&per_page=5", "/api/articles?page=3&per_page=5"
		var old articlePage
		for _, in := range []*webapp{a, b} {
			in.getJSON(t, shows, http.StatusOK, &old)
			in.getJSON(t, other, http.StatusOK, &articlePage{})
		}
		require.Len(t, old.Articles, 5)
		edited := old.Articles[2]
		title := "Tagged edit at " + time.Now().Format(time.RFC3339Nano)
		a.doJSON(t, http.MethodPut, "/api/articles/"+strconv.FormatInt(edited.ID, 10), `{"title":`+strconv.Quote(title)+`}`, http.StatusOK, &Article{})

		before := a.dbQueries(t) + b.dbQueries(t)
		for _, in := range []*webapp{a, b} {
			require.Eventually(t, func() bool {
				var p articlePage
				in.getJSON(t, shows, http.StatusOK, &p)
				return len(p.Articles) == 5 && p.Articles[2].ID == edited.ID && p.Articles[2].Title == title
			}, time.Second, 5*time.Millisecond, "%s still serves the list page with the old title a second after the edit", in.name)
		}
		assert.Equal(t, int64(1), a.dbQueries(t)+b.dbQueries(t)-before,
			"the page that shows the article is rebuilt once, for both instances, from its cached IDs and articles and the edited row")

		before = a.dbQueries(t) + b.dbQueries(t)
		for _, in := range []*webapp{a, b} {
			var p articlePage
			in.getJSON(t, other, http.StatusOK, &p)
			require.Len(t, p.Articles, 5)
		}
		assert.Equal(t, before, a.dbQueries(t)+b.dbQueries(t), "the page that does not show the article stays cached on both instances")
	})

	likesBefore := int64(-1)
	t.Run("LikesFromBothInstancesAddUp", func(t *testing.T) {
		const perInstance = 20
		var v articleView
		a.getJSON(t, "/api/articles/9", http.StatusOK, &v) // seeds the counter from the database
		likesBefore = v.Likes

		var wg sync.WaitGroup
		var failed atomic.Int64
		for _, in := range []*webapp{a, b} {
			for range perInstance {
				wg.Go(func() {
					status, body := in.do(t, http.MethodPost, "/api/articles/9/like", "")
					if status != http.StatusOK {
						failed.Add(1)
						t.Errorf("like through %s: %d %s", in.name, status, body)
					}
				})
			}
		}
		wg.Wait()
		require.Zero(t, failed.Load())

		want := likesBefore + 2*perInstance
		for _, in := range []*webapp{a, b} {
			in.getJSON(t, "/api/articles/9", http.StatusOK, &v)
			assert.Equal(t, want, v.Likes, "like count through %s", in.name)
		}
	})

	t.Run("ImageProxySharesItsCacheAcrossInstances", func(t *testing.T) {
		target := "/proxy/image?url=" + url.QueryEscape(origin.URL+"/pixel.png")
		statusA, fromA := a.do(t, http.MethodGet, target, "")
		require.Equal(t, http.StatusOK, statusA, "%s", fromA)
		statusB, fromB := b.do(t, http.MethodGet, target, "")
		require.Equal(t, http.StatusOK, statusB, "%s", fromB)
		assert.Equal(t, pixelPNG(t), fromA)
		assert.Equal(t, fromA, fromB)
		assert.Equal(t, int64(1), originHits.Load(), "B serves the image A fetched, from Redis")

		status, body := a.do(t, http.MethodGet, "/proxy/image?url="+url.QueryEscape("http://localhost:1/x.png"), "")
		assert.Equal(t, http.StatusForbidden, status, "a host off the allow-list: %s", body)
	})

	t.Run("CacheStatsAreSensible", func(t *testing.T) {
		var sa, sb cacheStats
		// An L1 fill lands a moment after the read that caused it (ristretto buffers it).
		require.Eventually(t, func() bool {
			a.getJSON(t, "/api/articles?page=2&per_page=7", http.StatusOK, &articlePage{})
			a.getJSON(t, "/api/cache-stats", http.StatusOK, &sa)
			return sa.L1Hits > 0
		}, 5*time.Second, 5*time.Millisecond, "A's L1 never hit")
		b.getJSON(t, "/api/cache-stats", http.StatusOK, &sb)
		for _, s := range []cacheStats{sa, sb} {
			assert.Equal(t, "tracking", s.Mode)
			assert.Equal(t, "closed", s.Breaker)
			assert.Zero(t, s.L2Errors)
			assert.Zero(t, s.DecodeErrors)
			assert.Empty(t, s.RedisError)
			require.NotNil(t, s.Redis)
			assert.Positive(t, s.Redis.Keys)
			assert.GreaterOrEqual(t, s.Redis.ConnectedClients, int64(4), "two instances, each with a data and a tracking connection")
		}
		assert.Positive(t, sa.Loads, "A loaded from the database")
		assert.Positive(t, sb.L2Hits, "B read what A loaded")
		assert.Positive(t, sa.Invalidations.Local, "A's update invalidated")
		assert.Positive(t, sb.Invalidations.Tracking, "B heard of A's writes from Redis")
		assert.InDelta(t, float64(sa.L1Hits)/float64(sa.L1Hits+sa.L1Misses), sa.L1HitRatio, 1e-9)
	})

	t.Run("MetricsCountL1Hits", func(t *testing.T) {
		// tiercache.requests{tiercache.group=data:article, tier=l1, result=hit} in A's /metrics.
		l1Hits := func() float64 {
			t.Helper()
			status, body := a.do(t, http.MethodGet, "/metrics", "")
			require.Equal(t, http.StatusOK, status, "%s", body)
			for _, line := range strings.Split(string(body), "\n") {
				if strings.HasPrefix(line, "tiercache_requests_total{") && strings.Contains(line, `tiercache_group="data:article"`) &&
					strings.Contains(line, `tiercache_tier="l1"`) && strings.Contains(line, `tiercache_result="hit"`) {
					v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
					require.NoError(t, err, line)
					return v
				}
			}
			t.Fatalf("no L1 hit counter of data:article in A's /metrics:\n%s", body)
			return 0
		}
		a.getJSON(t, "/api/articles/11", http.StatusOK, &articleView{})
		before := l1Hits()
		// The second read is an L1 hit once ristretto has applied the first one's fill.
		require.Eventually(t, func() bool {
			a.getJSON(t, "/api/articles/11", http.StatusOK, &articleView{})
			return l1Hits() > before
		}, 5*time.Second, 5*time.Millisecond, "reading an article again never moved A's L1 hit counter")
	})

	t.Run("RedisDownTheAPIAnswersFromTheDatabase", func(t *testing.T) {
		var edited articleView
		a.getJSON(t, "/api/articles/5", http.StatusOK, &edited)
		redis.Stop()

		before := a.dbQueries(t)
		var v articleView
		a.getJSON(t, "/api/articles/11", http.StatusOK, &v) // never read before: the database answers
		assert.Equal(t, int64(11), v.ID)
		assert.Equal(t, "Caching at the edge, part 2", v.Title)
		assert.Greater(t, a.dbQueries(t), before, "the article came from the database")

		b.getJSON(t, "/api/articles/5", http.StatusOK, &v)
		assert.Equal(t, edited.Title, v.Title)
		if likesBefore >= 0 {
			b.getJSON(t, "/api/articles/9", http.StatusOK, &v)
			assert.Equal(t, likesBefore+40, v.Likes, "the likes table holds every like the counter counted")
		}

		var p articlePage
		a.getJSON(t, "/api/articles?page=3&per_page=5", http.StatusOK, &p)
		assert.Len(t, p.Articles, 5)
		var u User
		b.getJSON(t, "/api/users/3", http.StatusOK, &u)
		assert.Equal(t, "Kofi Mensah", u.Name)

		var liked struct{ Likes int64 }
		a.doJSON(t, http.MethodPost, "/api/articles/11/like", "", http.StatusOK, &liked)
		var after articleView
		b.getJSON(t, "/api/articles/11", http.StatusOK, &after)
		assert.Equal(t, liked.Likes, after.Likes)

		var s cacheStats
		a.getJSON(t, "/api/cache-stats", http.StatusOK, &s)
		assert.NotEmpty(t, s.RedisError, "the stats say Redis is unreachable")
	})

	t.Run("RedisBackReadsAreCachedAgain", func(t *testing.T) {
		redis.Restart()
		require.Eventually(t, func() bool {
			var s cacheStats
			a.getJSON(t, "/api/cache-stats", http.StatusOK, &s)
			return s.Breaker == "closed" && s.RedisError == ""
		}, 10*time.Second, 20*time.Millisecond, "A's breaker never closed after Redis came back")
		require.Eventually(t, func() bool {
			a.getJSON(t, "/api/articles?page=4&per_page=5", http.StatusOK, &articlePage{})
			before := b.dbQueries(t)
			b.getJSON(t, "/api/articles?page=4&per_page=5", http.StatusOK, &articlePage{})
			return b.dbQueries(t) == before
		}, 10*time.Second, 20*time.Millisecond, "reads never shared the cache again after Redis came back")
	})
}

// articlePage is the body of GET /api/articles.
type articlePage struct {
	Page     int        `json:"page"`
	PerPage  int        `json:"per_page"`
	Articles []listItem `json:"articles"`
}

// cacheStats is the part of GET /api/cache-stats the test reads.
type cacheStats struct {
	Mode          string  `json:"mode"`
	Breaker       string  `json:"breaker"`
	L1Hits        uint64  `json:"l1_hits"`
	L1Misses      uint64  `json:"l1_misses"`
	L2Hits        uint64  `json:"l2_hits"`
	L2Errors      uint64  `json:"l2_errors"`
	Loads         uint64  `json:"loads"`
	DecodeErrors  uint64  `json:"decode_errors"`
	L1HitRatio    float64 `json:"l1_hit_ratio"`
	Invalidations struct {
		Local    uint64 `json:"local"`
		Tracking uint64 `json:"tracking"`
	} `json:"invalidations"`
	Redis *struct {
		Keys             int64 `json:"keys"`
		ConnectedClients int64 `json:"connected_clients"`
	} `json:"redis"`
	RedisError string `json:"redis_error"`
}

// buildWebapp builds this package's binary into a temporary directory.
func buildWebapp(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "webapp")
	out, err := exec.Command("go", append(append([]string{"build"}, buildFlags...), "-o", bin, ".")...).CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// webapp is one running instance.
type webapp struct {
	name    string
	base    string // http://127.0.0.1:<port>
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has exited
	client  *http.Client
}

func startWebapp(t *testing.T, bin, name string, env []string, args ...string) *webapp {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	defer logFile.Close()

	// Port 0: the instance picks a free port and logs it, so no other test can take the port
	// between a check and the instance's bind.
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(t, cmd.Start())
	transport := &http.Transport{}
	w := &webapp{name: name, logPath: logPath, cmd: cmd, exited: make(chan struct{}),
		client: &http.Client{Transport: transport, Timeout: 10 * time.Second}}
	go func() { _ = cmd.Wait(); close(w.exited) }()
	t.Cleanup(func() {
		transport.CloseIdleConnections()
		w.stop(t)
	})
	return w
}

// stop sends SIGTERM and expects a graceful exit with status 0.
func (w *webapp) stop(t *testing.T) {
	select {
	case <-w.exited:
		t.Errorf("%s exited before the end of the test", w.name)
	default:
		require.NoError(t, w.cmd.Process.Signal(syscall.SIGTERM))
		select {
		case <-w.exited:
		case <-time.After(20 * time.Second):
			_ = w.cmd.Process.Kill()
			<-w.exited
			t.Errorf("%s did not exit within 20s of SIGTERM", w.name)
		}
	}
	assert.Equal(t, 0, w.cmd.ProcessState.ExitCode(), "%s: exit status after SIGTERM", w.name)
	if t.Failed() {
		log, _ := os.ReadFile(w.logPath)
		if len(log) > 8000 {
			log = log[len(log)-8000:]
		}
		t.Logf("%s log (tail):\n%s", w.name, log)
	}
}

// listeningRe finds the address in the instance's "listening" log line.
var listeningRe = regexp.MustCompile(`"msg":"listening","addr":"(127\.0\.0\.1:\d+)"`)

// waitReady reads the instance's address from its log, then polls /healthz until the instance answers, failing early if it exits.
func (w *webapp) waitReady(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		select {
		case <-w.exited:
			log, _ := os.ReadFile(w.logPath)
			require.FailNowf(t, "instance exited at start-up", "%s: %s", w.name, log)
		default:
		}
		if w.base == "" {
			log, _ := os.ReadFile(w.logPath)
			m := listeningRe.FindSubmatch(log)
			if m == nil {
				return false
			}
			w.base = "http://" + string(m[1])
		}
		resp, err := w.client.Get(w.base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 10*time.Millisecond, "%s never answered /healthz", w.name)
}

// do sends a request and returns the status and body. It reports transport errors with
// t.Errorf (not FailNow), so it may be called from other goroutines.
func (w *webapp) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, w.base+path, rd)
	if err != nil {
		t.Errorf("%s %s: %v", method, path, err)
		return 0, nil
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := w.client.Do(req)
	if err != nil {
		t.Errorf("%s %s%s: %v", method, w.name, path, err)
		return 0, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("%s %s%s: reading body: %v", method, w.name, path, err)
	}
	return resp.StatusCode, b
}

func (w *webapp) doJSON(t *testing.T, method, path, body string, wantStatus int, v any) {
	t.Helper()
	status, b := w.do(t, method, path, body)
	require.Equal(t, wantStatus, status, "%s %s on %s: %s", method, path, w.name, b)
	require.NoError(t, json.Unmarshal(b, v), "%s %s on %s: %s", method, path, w.name, b)
}

func (w *webapp) getJSON(t *testing.T, path string, wantStatus int, v any) {
	t.Helper()
	w.doJSON(t, http.MethodGet, path, "", wantStatus, v)
}

// dbQueries is how many statements the instance has run against the database.
func (w *webapp) dbQueries(t *testing.T) int64 {
	t.Helper()
	var v struct{ Queries int64 }
	w.getJSON(t, "/debug/db-queries", http.StatusOK, &v)
	return v.Queries
}

// imageOrigin serves pixelPNG at any path on a loopback port, counting requests.
func imageOrigin(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	data := pixelPNG(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func pixelPNG(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 2, 2))
	img.Set(0, 0, color.RGBA{R: 200, G: 40, B: 90, A: 255})
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, img))
	return buf.Bytes()
}
