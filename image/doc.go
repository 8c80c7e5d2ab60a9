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
// through tiered's per-call TTL, in the one group "img". Set accepts only raster images,
// recognised by their bytes (see [Cache.Set]).
//
// # Proxy
//
// NewProxy returns an http.Handler for GET and HEAD ?url=<image url> that fetches images from
// allowed origins, caches them, and serves them with a strong ETag, Cache-Control, Range and
// conditional-request support. Its cache key is the URL as fetched: canonical host and port,
// no fragment, and only the query parameters ProxyOptions.KeepQueryParams lists (none by
// default), so that junk parameters make neither origin fetches nor Redis entries. A
// no_cache=1 parameter forces an origin fetch only for requests ProxyOptions.AllowNoCache
// trusts, and is ignored otherwise.
//
// The proxy refuses server-side request forgery at every step where a URL or an address
// appears:
//
//  1. The request's URL: only http and https, no user info, and the host must be on
//     ProxyOptions.AllowedHosts with its port: 80 or 443 for an entry without a port, the
//     entry's own port otherwise (an empty list is an option error). Numeric host forms that
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
// proxy's. "Not public" means every entry of the IANA IPv4 and IPv6 Special-Purpose Address
// Registries that is not globally reachable (loopback, private, link-local with the
// 169.254.169.254 cloud metadata address, CGNAT 100.64.0.0/10, documentation, benchmarking,
// the 6to4 relay anycast 192.88.99.0/24, Teredo, …), multicast, reserved space, and all of
// IPv6 outside 2000::/3, which includes all of ::/8 (the IPv4-compatible and SIIT
// ::ffff:0:0/96 forms among it). IPv4-mapped addresses are judged as IPv4, and NAT64
// (64:ff9b::/96) and 6to4 (2002::/16) addresses by the IPv4 address they embed. ranges.go
// lists each range with its registry entry. ProxyOptions.AllowPrivateNetworks turns the
// address checks off (for origins on your own network, and for tests).
//
// The proxy serves only raster images it recognises by their first bytes (PNG, JPEG, GIF,
// WebP, AVIF, BMP and ICO), under the type the bytes show, whatever the origin or a cached
// entry declares: an origin's answer must be 200 or 203 with an image/* Content-Type other
// than SVG (which can carry script) and bytes of one of these formats, else it is a 415, and
// a cached entry that is not one of them is refused as well. Every answer, image or error,
// carries Content-Security-Policy: default-src 'none'; sandbox and X-Content-Type-Options:
// nosniff. A body larger than the cache's MaxImageBytes is a 413. Concurrent misses of one
// URL share one origin fetch, which ends when every request waiting for it has gone (or at
// the proxy's Timeout, or on Close). When Redis is unavailable the proxy keeps serving by
// fetching from the origin.
//
// Errors are plain text, never cached (no-store), and tell the client only the class of the
// failure, one fixed text per status ("image proxy: url not allowed", "image proxy: origin
// failed", "image proxy: origin timed out", "image proxy: image too large", …): no address,
// DNS or dial error, option name or limit. Only a bad URL's reason (400), which is about what
// the client sent, is given. The cause goes to ProxyOptions.Logger: the guard's refusals at
// Info, each naming the option that would allow the request, origin failures at Debug.
//
// A Proxy owns an HTTP transport and the fetches in flight: Close it when done.
package image
