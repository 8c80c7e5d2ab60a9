package image

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// Stats counts requests, cache hits, origin fetches and their failures, and refusals.
func TestProxyStats(t *testing.T) {
	e := newCacheEnv(t, Options{})
	good := newOrigin(t, servePNG(pngBytes(500, 's')))
	bad := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusNotFound) })
	p := openProxy(t, e, ProxyOptions{}, good, bad)
	require.Equal(t, ProxyStats{}, p.Stats())

	require.Equal(t, http.StatusOK, get(t, p, good.URL+"/a.png").Code) // fetched
	require.Equal(t, http.StatusOK, get(t, p, good.URL+"/a.png").Code) // from the cache
	require.Equal(t, http.StatusBadGateway, get(t, p, bad.URL+"/b.png").Code)
	require.Equal(t, http.StatusForbidden, get(t, p, "http://elsewhere.example/c.png").Code)
	require.Equal(t, ProxyStats{Requests: 4, Hits: 1, Fetches: 2, FetchErrors: 1, Refused: 1}, p.Stats())
}
