package image

import "sync/atomic"

// ProxyStats is a snapshot of a Proxy's requests since NewProxy, for monitoring (package
// github.com/synspirit/tiercache/otelmetrics exports them).
type ProxyStats struct {
	Requests uint64 `json:"requests"` // every request, answered however
	Hits     uint64 `json:"hits"`     // images served from the cache (L1 or Redis)
	// Fetches counts origin fetches (one per image for concurrent requests of it), and
	// FetchErrors those that failed: the origin did not answer 200, timed out, sent too much
	// or something that is not an accepted image, or a panic.
	Fetches     uint64 `json:"fetches"`
	FetchErrors uint64 `json:"fetch_errors"`
	Refused     uint64 `json:"refused"` // URLs the guard refused (403): host not allowed, private address
}

type proxyStats struct {
	requests, hits, fetches, fetchErrors, refused atomic.Uint64
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() ProxyStats {
	return ProxyStats{
		Requests:    p.st.requests.Load(),
		Hits:        p.st.hits.Load(),
		Fetches:     p.st.fetches.Load(),
		FetchErrors: p.st.fetchErrors.Load(),
		Refused:     p.st.refused.Load(),
	}
}
