package image

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a Redis, a tiered.Cache on it and an image Cache over that.
type env struct {
	s  *redistest.Server
	tc *tiered.Cache
	ic *Cache
}

func newEnv(t *testing.T) *env {
	t.Helper()
	s := redistest.Start(t)
	return &env{s: s, tc: newTiered(t, s)}
}

func newTiered(t *testing.T, s *redistest.Server) *tiered.Cache {
	t.Helper()
	tc, err := tiered.New(context.Background(), tiered.Options{RedisURL: s.URL(), KeyPrefix: "t:", ExactL1Stats: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tc.Close() })
	return tc
}

func newCacheEnv(t *testing.T, opts Options) *env {
	t.Helper()
	e := newEnv(t)
	e.ic = New(e.tc, opts)
	return e
}

// newProxy returns a proxy closed at the end of the test.
func newProxy(t *testing.T, ic *Cache, opts ProxyOptions) *Proxy {
	t.Helper()
	p := NewProxy(ic, opts)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// origin is an httptest server on loopback counting its requests and connections.
type origin struct {
	*httptest.Server
	requests atomic.Int64
	conns    atomic.Int64
}

func newOrigin(t *testing.T, h http.HandlerFunc) *origin {
	t.Helper()
	o := &origin{}
	o.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.requests.Add(1)
		h(w, r)
	}))
	o.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			o.conns.Add(1)
		}
	}
	o.Start()
	t.Cleanup(o.Close)
	return o
}

// get asks the proxy for target and returns the recorded response.
func get(t *testing.T, p http.Handler, target string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	return do(t, p, http.MethodGet, "/img?url="+url.QueryEscape(target), header...)
}

func do(t *testing.T, p http.Handler, method, path string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req = req.WithContext(ctx)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	return rec
}

func newUnstartedOn(ln net.Listener, h http.HandlerFunc) *httptest.Server {
	s := httptest.NewUnstartedServer(h)
	_ = s.Listener.Close()
	s.Listener = ln
	return s
}

func redisKey(t *testing.T, ic *Cache, u string) string {
	t.Helper()
	k, err := ic.RedisKey(context.Background(), u)
	require.NoError(t, err)
	return k
}
