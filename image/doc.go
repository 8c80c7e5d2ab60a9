// Package image caches image blobs in a tiered.Cache and serves them through a safe HTTP
// image proxy.
//
// # Blob cache
//
// A Cache stores each image in the tiered group "img", under the key hex(SHA-256(url)), so
// its Redis key is <KeyPrefix>img@<generation>:<64 hex digits> (the original design's
// img:<hash of url>, in tiered's key layout).
// The stored value is a small binary record of its own (see codec.go): format version,
// stored-at and expires-at times, source URL, content type, ETag and the bytes, each field
// length-prefixed. A read compares the recorded URL with the one asked for, so a hash
// collision, or a value copied under another key, is a miss rather than another URL's bytes.
//
// Images up to Options.L1MaxEntryBytes (default 256 KiB) are also kept in the in-process L1,
// costed by their encoded size; bigger ones are served from Redis. Like every tiered entry,
// a Set or Delete on one instance makes every instance drop what it held.
//
// Bytes are copied at the boundary: Set encodes a copy of the caller's slice, and Get
// returns a fresh copy, so neither side can change what the cache holds.
//
// Every image may have its own TTL (Set's ttl, ProxyOptions.TTL): each is stored with it
// through tiered's per-call TTL, in the one group "img".
//
// # Proxy
//
// NewProxy returns an http.Handler for GET and HEAD ?url=<image url>[&no_cache=1] that
// fetches images from allowed origins, caches them, and serves them with a strong ETag,
// Cache-Control, Range and conditional-request support.
//
// The proxy refuses server-side request forgery at every step where a URL or an address
// appears:
//
//  1. The request's URL: only http and https, no user info, the host must be on
//     ProxyOptions.AllowedHosts (an empty list denies everything). Numeric host forms that
//     resolvers accept (0x7f000001, 2130706433, 127.1, 0177.0.0.1, [::ffff:127.0.0.1]) are
//     decoded here, never sent to DNS, and "localhost" names are treated as loopback; a
//     non-public address is refused before any I/O.
//  2. Every redirect (at most ProxyOptions.MaxRedirects, default 3) goes through the same
//     check in the client's CheckRedirect.
//  3. The transport's DialContext resolves the host itself and refuses the connection when
//     any of its addresses is not public; it then dials an IP literal.
//  4. The dialer's Control hook checks the address once more just before connect(2), so no
//     code path (redirects, DNS rebinding between lookups, Happy Eyeballs) reaches a private
//     address.
//
// Environment proxies (HTTP_PROXY) are not used: they would make the dialled address the
// proxy's. "Not public" means loopback, private (RFC 1918, fc00::/7), link-local (including
// the 169.254.169.254 cloud metadata address), CGNAT 100.64.0.0/10, multicast, unspecified,
// reserved and documentation ranges, and IPv6 forms that embed an IPv4 address (IPv4-mapped,
// NAT64, 6to4, Teredo) whose IPv4 address is not public. ProxyOptions.AllowPrivateNetworks
// turns the address checks off (for origins on your own network, and for tests).
//
// The origin's response must be 200 with an image/* Content-Type, confirmed by
// http.DetectContentType on its first bytes; the sniffed type is what the proxy serves. SVG
// is refused (415): it can carry script, and the proxy serves images under the site's own
// origin. A body larger than the cache's MaxImageBytes is a 413. Concurrent misses of one URL
// share one origin fetch, which ends when every request waiting for it has gone (or at the
// proxy's Timeout, or on Close). Errors are plain text, never cached, and marked no-store.
// When Redis is unavailable the proxy keeps serving by fetching from the origin.
//
// A Proxy owns an HTTP transport and the fetches in flight: Close it when done.
package image
