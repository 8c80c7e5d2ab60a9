package image

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zapcore"
)

// Proxying tests run with AllowPrivateNetworks: their origins are on loopback. The guard is
// tested with it off in guard_test.go.

func servePNG(body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(body)
	}
}

// openProxy opens a proxy allowing private networks and, unless opts says otherwise, the
// host:port of each origin (or 127.0.0.1, ports 80 and 443, without origins).
func openProxy(t *testing.T, e *env, opts ProxyOptions, origins ...*origin) *Proxy {
	t.Helper()
	opts.AllowPrivateNetworks = true
	if opts.AllowedHosts == nil {
		opts.AllowedHosts = []string{"127.0.0.1"}
		if len(origins) > 0 {
			opts.AllowedHosts = nil
		}
		for _, o := range origins {
			opts.AllowedHosts = append(opts.AllowedHosts, o.Listener.Addr().String())
		}
	}
	return newProxy(t, e.ic, opts)
}

func TestProxyServesAndCaches(t *testing.T) {
	e := newCacheEnv(t, Options{})
	body := pngBytes(5000, 'p')
	o := newOrigin(t, servePNG(body))
	p := openProxy(t, e, ProxyOptions{}, o)
	u := o.URL + "/a.png"

	for i := 0; i < 3; i++ {
		rec := get(t, p, u)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		assert.Equal(t, body, rec.Body.Bytes())
		h := rec.Header()
		assert.Equal(t, "image/png", h.Get("Content-Type"))
		assert.Equal(t, "5000", h.Get("Content-Length"))
		assert.Equal(t, ETag(body), h.Get("ETag"))
		assert.True(t, strings.HasPrefix(h.Get("ETag"), `"`), "strong etag")
		assert.Equal(t, "nosniff", h.Get("X-Content-Type-Options"))
		cc := h.Get("Cache-Control")
		require.True(t, strings.HasPrefix(cc, "public, max-age="), cc)
		age, err := strconv.Atoi(strings.TrimPrefix(cc, "public, max-age="))
		require.NoError(t, err)
		assert.InDelta(t, DefaultTTL.Seconds(), age, 5)
	}
	assert.EqualValues(t, 1, o.requests.Load())
	img, err := e.ic.Get(context.Background(), u)
	require.NoError(t, err)
	assert.Equal(t, body, img.Data)
}

func TestProxyConfiguredMaxAgeAndTTL(t *testing.T) {
	e := newCacheEnv(t, Options{})
	o := newOrigin(t, servePNG(pngBytes(100, 1)))
	p := openProxy(t, e, ProxyOptions{MaxAge: time.Minute, TTL: time.Hour}, o)
	rec := get(t, p, o.URL+"/a.png")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "public, max-age=60", rec.Header().Get("Cache-Control"))
	ttl, err := e.s.Do("PTTL", redisKey(t, e.ic, o.URL+"/a.png")).AsInt64()
	require.NoError(t, err)
	assert.InDelta(t, time.Hour.Milliseconds(), ttl, 5000)
}

func TestProxyConditionalRangeHead(t *testing.T) {
	e := newCacheEnv(t, Options{})
	body := pngBytes(1000, 'r')
	o := newOrigin(t, servePNG(body))
	p := openProxy(t, e, ProxyOptions{}, o)
	u := o.URL + "/a.png"
	require.Equal(t, http.StatusOK, get(t, p, u).Code)

	rec := get(t, p, u, "If-None-Match", ETag(body))
	assert.Equal(t, http.StatusNotModified, rec.Code)
	assert.Empty(t, rec.Body.Bytes())
	assert.Equal(t, ETag(body), rec.Header().Get("ETag"))

	rec = get(t, p, u, "If-None-Match", `"other"`)
	assert.Equal(t, http.StatusOK, rec.Code)

	rec = get(t, p, u, "Range", "bytes=10-19")
	assert.Equal(t, http.StatusPartialContent, rec.Code)
	assert.Equal(t, body[10:20], rec.Body.Bytes())
	assert.Equal(t, "bytes 10-19/1000", rec.Header().Get("Content-Range"))

	rec = do(t, p, http.MethodHead, "/img?url="+url.QueryEscape(u))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Empty(t, rec.Body.Bytes())
	assert.Equal(t, "1000", rec.Header().Get("Content-Length"))
	assert.Equal(t, "image/png", rec.Header().Get("Content-Type"))
}

func assertPlainError(t *testing.T, rec interface {
	Result() *http.Response
}, status int, contains string) {
	t.Helper()
	res := rec.Result()
	body := new(bytes.Buffer)
	_, _ = body.ReadFrom(res.Body)
	assert.Equal(t, status, res.StatusCode, body.String())
	assert.Equal(t, "text/plain; charset=utf-8", res.Header.Get("Content-Type"))
	assert.Equal(t, "no-store", res.Header.Get("Cache-Control"))
	assert.Contains(t, body.String(), contains)
}

func TestProxyRequestErrors(t *testing.T) {
	e := newCacheEnv(t, Options{})
	p := openProxy(t, e, ProxyOptions{})
	assertPlainError(t, do(t, p, http.MethodPost, "/img?url=http://127.0.0.1/a.png"), 405, "method POST not allowed")
	assert.Equal(t, "GET, HEAD", do(t, p, http.MethodPut, "/img").Header().Get("Allow"))
	assertPlainError(t, do(t, p, http.MethodGet, "/img"), 400, "missing url")
	assertPlainError(t, get(t, p, "http://%zz/"), 400, "does not parse")
	assertPlainError(t, get(t, p, "ftp://127.0.0.1/a.png"), 400, "scheme")
	assertPlainError(t, get(t, p, "file:///etc/passwd"), 400, "scheme")
	assertPlainError(t, get(t, p, "/relative.png"), 400, "scheme")
	assertPlainError(t, get(t, p, "http://user:pw@127.0.0.1/a.png"), 400, "user info")
	assertPlainError(t, get(t, p, "http://1.2.3.999/a.png"), 400, "neither")
	assertPlainError(t, get(t, p, "http://[::1/a.png"), 400, "does not parse")

	// A refusal by the guard tells the client only that; the log (at info) names the option.
	log, logs := observedLogger()
	p = openProxy(t, e, ProxyOptions{Logger: log})
	assertShortBody(t, get(t, p, "http://cdn.example/a.png"), 403, msgNotAllowed, "cdn.example", "AllowedHosts")
	assertLogged(t, logs, zapcore.InfoLevel, "http://cdn.example/a.png", "image url refused", `host "cdn.example" is not allowed: it is not on ProxyOptions.AllowedHosts`)
	// A bad URL's reason is about what the client sent, and is logged at debug; a password
	// in it is not logged.
	assertPlainError(t, get(t, p, "http://user:hunter2@127.0.0.1/a.png"), 400, "image proxy: urls with user info are not allowed")
	text := assertLogged(t, logs, zapcore.DebugLevel, "http://user:xxxxx@127.0.0.1/a.png", "bad image url", "user info")
	assert.NotContains(t, text, "hunter2")
}

// Origin failures: the client gets the short text of the status, the log (at debug) the
// cause, which names the option that would allow the request when there is one.
func TestProxyOriginErrors(t *testing.T) {
	e := newCacheEnv(t, Options{MaxImageBytes: 1000})
	cases := []struct {
		name    string
		handler http.HandlerFunc
		status  int
		body    string // the client's whole text
		logged  string // in the debug entry
	}{
		{"404", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, 502, msgOriginFailed, "the origin answered 404 Not Found"},
		{"500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }, 502, msgOriginFailed, "the origin answered 500 Internal Server Error"},
		{"html", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html><script>alert(1)</script></html>"))
		}, 415, msgNotImage, "the origin's Content-Type is text/html, not an image"},
		{"no content type", func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil
			_, _ = w.Write(pngBytes(100, 1))
		}, 415, msgNotImage, "the origin's Content-Type is none, not an image"},
		{"html claiming png", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/png")
			_, _ = w.Write([]byte("<html><script>alert(1)</script></html>"))
		}, 415, msgNotImage, "the origin's bytes are not PNG, JPEG, GIF, WebP, AVIF, BMP or ICO"},
		{"svg", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/svg+xml")
			_, _ = w.Write([]byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`))
		}, 415, msgNotImage, "SVG, refused as it can carry script"},
		{"too large by length", servePNG(pngBytes(1001, 1)), 413, msgTooLarge, "larger than 1000 bytes: raise Options.MaxImageBytes"},
		{"too large chunked", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/png")
			for i := 0; i < 11; i++ {
				_, _ = w.Write(pngBytes(100, 1))
				w.(http.Flusher).Flush()
			}
		}, 413, msgTooLarge, "larger than 1000 bytes: raise Options.MaxImageBytes"},
		{"too many redirects", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/loop", http.StatusFound)
		}, 502, msgOriginFailed, "more than 3 redirects: raise ProxyOptions.MaxRedirects"},
		// The origin's Location is not the client's URL: a 502, not a 400 telling the client
		// where the origin pointed.
		{"redirect to another scheme", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "gopher://127.0.0.1:70/secret", http.StatusFound)
		}, 502, msgOriginFailed, `redirect to a bad url: scheme "gopher" not allowed`},
		{"redirect with user info", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://admin:hunter2@127.0.0.1/x.png", http.StatusFound)
		}, 502, msgOriginFailed, "redirect to a bad url: urls with user info are not allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := newOrigin(t, c.handler)
			log, logs := observedLogger()
			p := openProxy(t, e, ProxyOptions{Logger: log}, o)
			u := o.URL + "/" + url.PathEscape(c.name)
			assertShortBody(t, get(t, p, u), c.status, c.body, "127.0.0.1", "1000", "Options", "hunter2")
			text := assertLogged(t, logs, zapcore.DebugLevel, u, c.logged)
			assert.NotContains(t, text, "hunter2", "a password in a redirect is not logged")
			_, err := e.ic.Get(context.Background(), u)
			assert.Error(t, err, "an error was cached")
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		o := newOrigin(t, servePNG(pngBytes(10, 1)))
		o.Close()
		log, logs := observedLogger()
		p := openProxy(t, e, ProxyOptions{Logger: log}, o)
		assertShortBody(t, get(t, p, o.URL+"/a.png"), 502, msgOriginFailed, "refused")
		assertLogged(t, logs, zapcore.DebugLevel, o.URL+"/a.png", "connection refused")
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		defer close(release)
		log, logs := observedLogger()
		p := openProxy(t, e, ProxyOptions{Timeout: 200 * time.Millisecond, Logger: log}, o)
		assertShortBody(t, get(t, p, o.URL+"/slow.png"), 504, msgTimedOut, "127.0.0.1", "200ms")
		assertLogged(t, logs, zapcore.DebugLevel, o.URL+"/slow.png", "origin timed out")
	})
	t.Run("slow body", func(t *testing.T) {
		release := make(chan struct{})
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/png")
			_, _ = w.Write(pngBytes(10, 1))
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		defer close(release)
		p := openProxy(t, e, ProxyOptions{Timeout: 200 * time.Millisecond}, o)
		assertShortBody(t, get(t, p, o.URL+"/slow.png"), 504, msgTimedOut)
	})
}

func TestProxyErrorsAreNotCached(t *testing.T) {
	e := newCacheEnv(t, Options{})
	var fail atomic.Bool
	fail.Store(true)
	body := pngBytes(100, 'x')
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		servePNG(body)(w, r)
	})
	p := openProxy(t, e, ProxyOptions{}, o)
	assert.Equal(t, http.StatusBadGateway, get(t, p, o.URL+"/a.png").Code)
	fail.Store(false)
	rec := get(t, p, o.URL+"/a.png")
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, body, rec.Body.Bytes())
}

// no_cache is ignored unless ProxyOptions.AllowNoCache trusts the request: any client could
// otherwise make every request an origin fetch.
func TestProxyNoCacheIgnoredByDefault(t *testing.T) {
	e := newCacheEnv(t, Options{})
	o := newOrigin(t, servePNG(pngBytes(100, 'a')))
	p := openProxy(t, e, ProxyOptions{}, o)
	for i := 0; i < 20; i++ {
		rec := do(t, p, http.MethodGet, "/img?no_cache=1&url="+url.QueryEscape(o.URL+"/a.png"))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	}
	assert.EqualValues(t, 1, o.requests.Load(), "origin fetches for 20 requests with no_cache=1")
}

func TestProxyNoCacheForTrustedRequests(t *testing.T) {
	e := newCacheEnv(t, Options{})
	var version atomic.Int32
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		servePNG(pngBytes(100, byte('a'+version.Load())))(w, r)
	})
	p := openProxy(t, e, ProxyOptions{AllowNoCache: func(r *http.Request) bool {
		return r.Header.Get("X-Admin-Token") == "secret"
	}}, o)
	u := o.URL + "/a.png"
	noCache := "/img?no_cache=1&url=" + url.QueryEscape(u)
	assert.Equal(t, pngBytes(100, 'a'), get(t, p, u).Body.Bytes())
	version.Store(1)
	assert.Equal(t, pngBytes(100, 'a'), get(t, p, u).Body.Bytes(), "served from the cache")
	assert.Equal(t, pngBytes(100, 'a'), do(t, p, http.MethodGet, noCache).Body.Bytes(), "untrusted no_cache is ignored")
	assert.Equal(t, pngBytes(100, 'a'), do(t, p, http.MethodGet, noCache, "X-Admin-Token", "wrong").Body.Bytes())
	assert.EqualValues(t, 1, o.requests.Load())
	rec := do(t, p, http.MethodGet, noCache, "X-Admin-Token", "secret")
	assert.Equal(t, pngBytes(100, 'b'), rec.Body.Bytes())
	assert.Equal(t, pngBytes(100, 'b'), get(t, p, u).Body.Bytes(), "the cache was refreshed")
	assert.EqualValues(t, 2, o.requests.Load())
}

// imageKeys counts the images in Redis.
func imageKeys(t *testing.T, e *env) int {
	t.Helper()
	keys, err := e.s.Do("KEYS", "t:img@*").AsStrSlice()
	require.NoError(t, err)
	return len(keys)
}

// Parameters of the proxy request other than url, and parameters of the image URL that the
// operator did not list, neither make another origin fetch nor another entry in Redis.
func TestProxyJunkParametersMakeNoEntries(t *testing.T) {
	e := newCacheEnv(t, Options{})
	var queries sync.Map // query strings the origin saw
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		queries.Store(r.URL.RawQuery, true)
		servePNG(pngBytes(100, 'q'))(w, r)
	})
	p := openProxy(t, e, ProxyOptions{}, o)
	for i := 0; i < 10; i++ {
		rec := do(t, p, http.MethodGet, "/img?url="+url.QueryEscape(o.URL+"/a.png")+"&x="+strconv.Itoa(i))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		rec = get(t, p, o.URL+"/a.png?x="+strconv.Itoa(i)+"#frag")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	}
	assert.EqualValues(t, 1, o.requests.Load(), "origin fetches")
	assert.Equal(t, 1, imageKeys(t, e), "images in Redis")
	_, sawQuery := queries.Load("")
	assert.True(t, sawQuery, "the origin was asked without the query")

	// The operator lists the parameters that select another image: only those count, in
	// any order.
	e = newCacheEnv(t, Options{})
	o.requests.Store(0)
	queries.Clear()
	p = openProxy(t, e, ProxyOptions{KeepQueryParams: []string{"w", "h"}}, o)
	for i, q := range []string{"w=200", "w=200&x=1", "x=2&w=200", "w=200&utm_source=a", "w=200&h=100", "h=100&w=200&x=3", "w=400"} {
		rec := get(t, p, o.URL+"/a.png?"+q)
		require.Equal(t, http.StatusOK, rec.Code, "#%d %s: %s", i, q, rec.Body.String())
	}
	assert.EqualValues(t, 3, o.requests.Load(), "origin fetches: w=200, h=100&w=200, w=400")
	assert.Equal(t, 3, imageKeys(t, e), "images in Redis")
	for _, q := range []string{"w=200", "h=100&w=200", "w=400"} {
		_, ok := queries.Load(q)
		assert.True(t, ok, "the origin was asked for ?%s", q)
	}

	// "*" keeps the whole query, as given.
	e = newCacheEnv(t, Options{})
	o.requests.Store(0)
	p = openProxy(t, e, ProxyOptions{KeepQueryParams: []string{"*"}}, o)
	for _, q := range []string{"sig=a%2Bb&w=1", "w=1&sig=a%2Bb", "sig=a%2Bb&w=1"} {
		require.Equal(t, http.StatusOK, get(t, p, o.URL+"/a.png?"+q).Code)
	}
	assert.EqualValues(t, 2, o.requests.Load())
	_, ok := queries.Load("w=1&sig=a%2Bb")
	assert.True(t, ok, "the query is sent as given")
}

func TestProxyConcurrentMissesFetchOnce(t *testing.T) {
	e := newCacheEnv(t, Options{})
	body := pngBytes(20000, 'c')
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		servePNG(body)(w, r)
	})
	p := openProxy(t, e, ProxyOptions{}, o)
	var wg sync.WaitGroup
	codes := make([]int, 100)
	for i := range codes {
		wg.Go(func() {
			rec := get(t, p, o.URL+"/a.png")
			codes[i] = rec.Code
			if !bytes.Equal(rec.Body.Bytes(), body) {
				t.Errorf("request %d: wrong body", i)
			}
		})
	}
	wg.Wait()
	for i, c := range codes {
		assert.Equal(t, http.StatusOK, c, "request %d", i)
	}
	assert.EqualValues(t, 1, o.requests.Load())
}

func TestProxyFollowsAllowedRedirect(t *testing.T) {
	e := newCacheEnv(t, Options{})
	body := pngBytes(100, 'd')
	final := newOrigin(t, servePNG(body))
	first := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, final.URL+"/final.png", http.StatusMovedPermanently)
	})
	p := openProxy(t, e, ProxyOptions{}, first, final)
	rec := get(t, p, first.URL+"/a.png")
	assert.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, body, rec.Body.Bytes())

	log, logs := observedLogger()
	p = openProxy(t, e, ProxyOptions{MaxRedirects: -1, Logger: log}, first, final)
	assertShortBody(t, get(t, p, first.URL+"/b.png"), 502, msgOriginFailed)
	assertLogged(t, logs, zapcore.DebugLevel, first.URL+"/b.png", "more than 0 redirects: raise ProxyOptions.MaxRedirects to follow more")
}

func TestProxyWorksWithRedisDown(t *testing.T) {
	e := newCacheEnv(t, Options{})
	body := pngBytes(100, 'e')
	o := newOrigin(t, servePNG(body))
	p := openProxy(t, e, ProxyOptions{}, o)
	e.s.Stop()
	for i := 0; i < 3; i++ {
		rec := get(t, p, o.URL+"/a.png")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		assert.Equal(t, body, rec.Body.Bytes())
		assert.Equal(t, ETag(body), rec.Header().Get("ETag"))
	}
	assert.EqualValues(t, 3, o.requests.Load())
}

func TestProxyServesSetImagesAndChecksAllowList(t *testing.T) {
	e := newCacheEnv(t, Options{})
	body := pngBytes(100, 'f')
	require.NoError(t, e.ic.Set(context.Background(), "http://127.0.0.1:1/set.png", body, "image/png", 0))
	p := openProxy(t, e, ProxyOptions{AllowedHosts: []string{"127.0.0.1:1"}})
	rec := get(t, p, "http://127.0.0.1:1/set.png")
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, body, rec.Body.Bytes())
	p = openProxy(t, e, ProxyOptions{AllowedHosts: []string{"cdn.example"}})
	assert.Equal(t, http.StatusForbidden, get(t, p, "http://127.0.0.1:1/set.png").Code)
}

func TestProxyBadOptionsAndClose(t *testing.T) {
	e := newCacheEnv(t, Options{})
	for _, opts := range []ProxyOptions{
		{AllowedHosts: []string{"a/b"}},
		{AllowedHosts: []string{"a"}, Timeout: -1},
		{AllowedHosts: []string{"a"}, TTL: -1},
		{AllowedHosts: []string{"a"}, KeepQueryParams: []string{""}},
		{AllowedHosts: []string{"a"}, KeepQueryParams: []string{"*", "w"}},
	} {
		require.ErrorIs(t, newProxy(t, e.ic, opts).Err(), ErrInvalidOptions, "%+v", opts)
		assertPlainError(t, get(t, newProxy(t, e.ic, opts), "http://a/x.png"), 500, "misconfigured")
	}
	assertPlainError(t, get(t, newProxy(t, nil, ProxyOptions{AllowedHosts: []string{"a"}}), "http://a/x.png"), 500, "misconfigured")

	o := newOrigin(t, servePNG(pngBytes(10, 1)))
	p := openProxy(t, e, ProxyOptions{}, o)
	require.NoError(t, p.Close())
	require.NoError(t, p.Close())
	assertPlainError(t, get(t, p, o.URL+"/a.png"), 503, "shutting down")
}

func TestProxyCloseEndsFetchInFlight(t *testing.T) {
	e := newCacheEnv(t, Options{})
	started := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	})
	p := openProxy(t, e, ProxyOptions{}, o)
	done := make(chan int)
	go func() { done <- get(t, p, o.URL+"/a.png").Code }()
	<-started
	require.NoError(t, p.Close())
	assert.Equal(t, http.StatusBadGateway, <-done)
}
