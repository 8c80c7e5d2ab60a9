package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/synspirit/tiercache/internal/flight"
	"github.com/synspirit/tiercache/internal/lifetime"
	"github.com/synspirit/tiercache/internal/sentinel"
	"github.com/synspirit/tiercache/tiered"
)

// Defaults of ProxyOptions. Each is used when its field is left at the zero value.
const (
	// DefaultProxyTimeout bounds one origin fetch: connecting, redirects and the body.
	DefaultProxyTimeout = 10 * time.Second
	// DefaultMaxRedirects is how many redirects an origin fetch follows.
	DefaultMaxRedirects = 3
)

// ProxyOptions configure a Proxy. AllowedHosts must be set: the zero value denies every
// request.
type ProxyOptions struct {
	// AllowedHosts are the origins the proxy may fetch from: host names ("cdn.example.com"),
	// IP addresses ("192.0.2.7", "2001:db8::7" or "[2001:db8::7]"), or "*.example.com" for
	// every subdomain (not the domain itself), each with an optional port
	// ("cdn.example.com:8443", "[2001:db8::7]:8080"). An entry without a port allows ports 80
	// and 443 only; one with a port allows that port only (list an entry twice for both).
	// Matching ignores case and a trailing dot. An empty list denies everything, and is an
	// option error.
	AllowedHosts []string

	// AllowPrivateNetworks lets the proxy connect to loopback, private, link-local and other
	// non-public addresses. Leave it off unless the origins are on your own network: with it
	// on, an allowed name that resolves to an internal address reaches that address.
	AllowPrivateNetworks bool

	// MaxRedirects is how many redirects a fetch follows, each checked like the first URL.
	// Default DefaultMaxRedirects; negative: none.
	MaxRedirects int

	// Timeout bounds one origin fetch. Default DefaultProxyTimeout. It expires as 504.
	Timeout time.Duration

	// TTL is how long fetched images stay in the cache; 0: the Cache's DefaultTTL.
	TTL time.Duration

	// MaxAge is the Cache-Control max-age sent to clients; 0: the remaining life of the
	// cached entry.
	MaxAge time.Duration

	// AllowNoCache reports whether r may force an origin fetch with no_cache=1 (or
	// no_cache=true), for callers you trust, e.g. by a header only your back office sends.
	// Nil, the default: no_cache is ignored, as any client could otherwise make every
	// request an origin fetch. It is called only for requests that carry no_cache.
	AllowNoCache func(r *http.Request) bool

	// KeepQueryParams are the query parameters of image URLs that select another image
	// ("w", "h", "v"): only they are kept, sorted by name, in the URL the proxy fetches and
	// caches; every other parameter is dropped, so that ?utm_source=… or ?x=1, ?x=2 … make
	// neither another origin fetch nor another entry in Redis. Nil, the default: the query is
	// dropped. A single "*" keeps the whole query as given (for signed URLs, say); each
	// distinct query string is then another fetch and another entry.
	KeepQueryParams []string

	// UserAgent is sent to origins. Default "tiercache-image-proxy".
	UserAgent string

	// Logger receives what the proxy does not tell clients. A client gets a short text per
	// status ("image proxy: url not allowed", "image proxy: origin failed", …) and never an
	// address, a DNS or dial error, an option name or a limit; the logger gets the why, with
	// the image URL (its password redacted) as the field "url":
	//   - Info: the guard's refusals (403), each naming the option that would allow the
	//     request: AllowedHosts (with the entry to add, for a port) or AllowPrivateNetworks.
	//   - Debug: origin failures (502, 504, and 413 or 415 for what the origin sent: its
	//     status, the DNS or dial error, the size or the type), bad image URLs (400, whose
	//     reason the client is told too), Redis failures (the proxy then works without its
	//     cache) and query parameters dropped by KeepQueryParams.
	//   - Warn: a cached entry that is not a raster image, refused with 415.
	//   - Error: a panic in an origin fetch (500), and requests refused for bad options.
	//
	// Default: no logging.
	Logger *zap.Logger
}

// withDefaults returns o with defaults filled in, and what is wrong with it.
func (o ProxyOptions) withDefaults() (ProxyOptions, []error) {
	var errs []error
	switch {
	case o.MaxRedirects == 0:
		o.MaxRedirects = DefaultMaxRedirects
	case o.MaxRedirects < 0:
		o.MaxRedirects = 0
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("negative Timeout %v", o.Timeout))
	} else if o.Timeout == 0 {
		o.Timeout = DefaultProxyTimeout
	}
	if o.TTL < 0 || o.TTL > tiered.MaxTTL {
		errs = append(errs, fmt.Errorf("TTL %v is negative or longer than tiered.MaxTTL", o.TTL))
	}
	if o.MaxAge < 0 || o.MaxAge > tiered.MaxTTL {
		errs = append(errs, fmt.Errorf("MaxAge %v is negative or longer than tiered.MaxTTL", o.MaxAge))
	}
	for _, name := range o.KeepQueryParams {
		switch {
		case name == "":
			errs = append(errs, errors.New("ProxyOptions.KeepQueryParams has an empty name"))
		case name == "*" && len(o.KeepQueryParams) > 1:
			errs = append(errs, errors.New(`ProxyOptions.KeepQueryParams: "*" keeps every parameter: list no names beside it`))
		}
	}
	if o.UserAgent == "" {
		o.UserAgent = "tiercache-image-proxy"
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o, errs
}

// Proxy is the image proxy, an http.Handler for GET and HEAD ?url=<image url>[&no_cache=1].
// It owns an HTTP transport and the origin fetches in flight: Close it when done.
type Proxy struct {
	c     *Cache
	opts  ProxyOptions
	err   error // bad options: every request is a 500
	log   *zap.Logger
	hosts hostList
	query queryRule

	// addrAllowed decides which addresses may be dialled: isPublicAddr, or everything with
	// AllowPrivateNetworks.
	addrAllowed func(netip.Addr) bool
	lookup      func(ctx context.Context, host string) ([]netip.Addr, error) // the resolver
	dialer      *net.Dialer
	transport   *http.Transport
	client      *http.Client

	life      *lifetime.Lifetime    // Close: ends fetches in flight and waits for them
	fetches   *flight.Group[*entry] // origin fetches in flight, by cache key
	closeOnce sync.Once
	st        proxyStats // see Stats
}

// NewProxy returns a proxy serving images through c. Bad options do not panic:
// [Proxy.Err] reports them (matching ErrInvalidOptions), and the proxy answers every
// request with a 500.
func NewProxy(c *Cache, opts ProxyOptions) *Proxy {
	o, problems := opts.withDefaults()
	p := &Proxy{c: c, opts: o, log: o.Logger.Named("image-proxy"), life: lifetime.New()}
	p.fetches = flight.New[*entry](p.life)
	if len(o.AllowedHosts) == 0 {
		problems = append(problems, errors.New("ProxyOptions.AllowedHosts is empty: the proxy would refuse every request"))
	} else if hosts, err := newHostList(o.AllowedHosts); err != nil {
		problems = append(problems, err)
	} else {
		p.hosts = hosts
	}
	p.query = newQueryRule(o.KeepQueryParams)
	if c == nil {
		problems = append(problems, errors.New("nil *Cache"))
	} else if c.err != nil {
		problems = append(problems, sentinel.WithoutPrefix(c.err, ErrInvalidOptions.Error()+": "))
	}
	if len(problems) > 0 {
		p.err = fmt.Errorf("%w: %w", ErrInvalidOptions, sentinel.Join(problems...))
	}
	p.addrAllowed = isPublicAddr
	if o.AllowPrivateNetworks {
		p.addrAllowed = func(netip.Addr) bool { return true }
	}
	p.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}
	p.dialer = &net.Dialer{Timeout: o.Timeout, KeepAlive: 30 * time.Second, Control: p.control}
	p.transport = &http.Transport{
		Proxy:                  nil, // an environment proxy would be the address dialled
		DialContext:            p.dialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    16,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    o.Timeout,
		ResponseHeaderTimeout:  o.Timeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	p.client = &http.Client{Transport: p.transport, CheckRedirect: p.checkRedirect}
	return p
}

// Err is the error of NewProxy's options (matching ErrInvalidOptions), or of its Cache's;
// nil for a usable proxy.
func (p *Proxy) Err() error { return p.err }

// Close stops the fetches in flight, waits for them, and closes idle origin connections.
// It is idempotent. Requests after Close are answered 503.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.life.Close()
		p.transport.CloseIdleConnections()
	})
	return nil
}

func (p *Proxy) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > p.opts.MaxRedirects {
		return &originError{reason: fmt.Sprintf("more than %d redirects: raise ProxyOptions.MaxRedirects to follow more", p.opts.MaxRedirects)}
	}
	err := p.checkURL(req.URL)
	var ue *badURLError
	if errors.As(err, &ue) {
		// The origin's Location is bad, not the client's URL: an origin failure.
		return &originError{reason: "redirect to a bad url: " + ue.reason}
	}
	return err
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.st.requests.Add(1)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		fail(w, http.StatusMethodNotAllowed, "image proxy: method "+r.Method+" not allowed: use GET or HEAD")
		return
	}
	q := r.URL.Query()
	raw := q.Get("url")
	if p.err != nil {
		p.log.Error("misconfigured proxy: refusing the request (see Proxy.Err)", zap.String("url", raw), zap.Error(p.err))
		fail(w, http.StatusInternalServerError, msgMisconfigured)
		return
	}
	if raw == "" {
		fail(w, http.StatusBadRequest, "image proxy: missing url parameter")
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		fail(w, http.StatusBadRequest, "image proxy: url does not parse")
		return
	}
	if err := p.checkURL(u); err != nil {
		p.fail(w, r, u, err)
		return
	}
	if dropped := p.query.apply(u); len(dropped) > 0 {
		p.log.Debug("query parameters dropped from the image url: list them in ProxyOptions.KeepQueryParams to keep them",
			zap.String("url", u.String()), zap.Strings("dropped", dropped))
	}
	key := u.String()

	var e *entry
	if !p.noCache(r, q.Get("no_cache")) {
		e, err = p.c.get(r.Context(), key)
		if err != nil && !errors.Is(err, tiered.ErrNotFound) {
			p.log.Debug("cache read failed: fetching from the origin", zap.String("url", key), zap.Error(err))
		}
		if e != nil {
			p.st.hits.Add(1)
		}
	}
	if e == nil {
		if e, err = p.fetchShared(r.Context(), u, key); err != nil {
			p.fail(w, r, u, err)
			return
		}
	}
	contentType, ok := sniffRaster(e.data)
	if !ok {
		// Set refuses such entries; an older version or another program wrote this one.
		p.log.Warn("cached entry is not a raster image: refusing to serve it", zap.String("url", key),
			zap.String("stored_content_type", e.contentType))
		fail(w, http.StatusUnsupportedMediaType, msgNotImage)
		return
	}
	p.serve(w, r, e, contentType)
}

// noCache reports whether r asks to bypass the cache and may.
func (p *Proxy) noCache(r *http.Request, param string) bool {
	return (param == "1" || param == "true") && p.opts.AllowNoCache != nil && p.opts.AllowNoCache(r)
}

// serve writes e as contentType, the type its bytes show. It never copies e.data: entries
// are immutable.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, e *entry, contentType string) {
	maxAge := p.opts.MaxAge
	if maxAge == 0 {
		maxAge = max(time.Until(time.UnixMilli(e.expiresAt)), 0)
	}
	h := w.Header()
	h["Content-Type"] = []string{contentType}
	h["Etag"] = []string{e.etag}
	h["Cache-Control"] = []string{"public, max-age=" + strconv.FormatInt(int64(maxAge/time.Second), 10)}
	setSafeHeaders(h)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(e.data))
}

// fetchShared returns the image at u, fetching it once for every concurrent caller. A
// caller that goes away leaves the fetch to the others; the fetch ends when every caller has
// gone, at the proxy's Timeout, or on Close.
func (p *Proxy) fetchShared(ctx context.Context, u *url.URL, key string) (*entry, error) {
	if p.life.Closed() {
		return nil, errProxyClosed
	}
	return p.fetches.Do(ctx, key, func(fctx context.Context) (*entry, error) {
		p.st.fetches.Add(1)
		e, err := p.fetch(fctx, u, key)
		if err != nil {
			p.st.fetchErrors.Add(1)
		}
		return e, err
	})
}

var errProxyClosed = errors.New("image: proxy closed")

// What clients are told: one short text per status, the same whatever the cause. The cause
// goes to the logger (see ProxyOptions.Logger).
const (
	msgNotAllowed    = "image proxy: url not allowed"
	msgOriginFailed  = "image proxy: origin failed"
	msgTimedOut      = "image proxy: origin timed out"
	msgTooLarge      = "image proxy: image too large"
	msgMisconfigured = "image proxy: misconfigured"
	// msgNotImage answers content that is not an accepted raster image.
	msgNotImage = "image proxy: unsupported media type: only " + rasterFormats + " images are served"
)

// originError is a failed origin fetch: 502. reason is for the log.
type originError struct{ reason string }

func (e *originError) Error() string { return "image proxy: origin failed: " + e.reason }

// statusError is a refusal of what the origin sent, with its own status: 413 or 415.
type statusError struct {
	status int
	msg    string // the client's text: msgTooLarge or msgNotImage
	detail string // the log's
}

func (e *statusError) Error() string { return e.msg + ": " + e.detail }

// fetch gets u from the origin, checks that it is an image, and stores it.
func (p *Proxy) fetch(ctx context.Context, u *url.URL, key string) (*entry, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &badURLError{reason: "url cannot be requested"}
	}
	req.Header.Set("Accept", "image/*")
	req.Header.Set("User-Agent", p.opts.UserAgent)
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNonAuthoritativeInfo {
		return nil, &originError{reason: "the origin answered " + resp.Status}
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err := acceptableType(mt); err != nil {
		return nil, err
	}
	limit := p.c.MaxImageBytes()
	if resp.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	var buf bytes.Buffer
	if resp.ContentLength > 0 {
		buf.Grow(int(resp.ContentLength))
	}
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, tooLarge(limit)
	}
	data := buf.Bytes()
	sniffed, ok := sniffRaster(data)
	if !ok {
		return nil, &statusError{http.StatusUnsupportedMediaType, msgNotImage, "the origin's bytes are not " + orList(rasterFormats)}
	}
	e, err := p.c.set(context.WithoutCancel(ctx), key, data, sniffed, p.opts.TTL)
	if err != nil {
		p.log.Debug("fetched image not cached", zap.String("url", key), zap.Error(err))
		if e == nil {
			now := time.Now()
			e = &entry{url: key, contentType: sniffed, etag: ETag(data), storedAt: now.UnixMilli(),
				expiresAt: now.Add(p.opts.TTL).UnixMilli(), data: data}
		}
	}
	return e, nil
}

// acceptableType accepts the origin's image/* media types except SVG, which can carry
// script: the first filter, before the body is read and sniffed.
func acceptableType(mediaType string) error {
	mt, _, _ := strings.Cut(mediaType, ";")
	mt = strings.TrimSpace(strings.ToLower(mt))
	switch {
	case mt == "image/svg+xml":
		return &statusError{http.StatusUnsupportedMediaType, msgNotImage, "the origin's Content-Type is SVG, refused as it can carry script"}
	case !strings.HasPrefix(mt, "image/"):
		if mt == "" {
			mt = "none"
		}
		return &statusError{http.StatusUnsupportedMediaType, msgNotImage, "the origin's Content-Type is " + mt + ", not an image"}
	}
	return nil
}

func tooLarge(limit int64) error {
	return &statusError{http.StatusRequestEntityTooLarge, msgTooLarge,
		fmt.Sprintf("the origin's image is larger than %d bytes: raise Options.MaxImageBytes of the image Cache to allow it", limit)}
}

// fail answers err with its status and the short text of its class, and logs the cause with
// the image URL u: the guard's refusals (403) at Info, origin failures at Debug, panics at
// Error. Only a bad URL's reason (400), about what the client sent, reaches the client.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, u *url.URL, err error) {
	var (
		se *statusError
		be *blockedError
		ue *badURLError
		oe *originError
	)
	at := zap.String("url", u.Redacted())
	err = redactRedirect(err)
	switch {
	case errors.As(err, &be):
		p.st.refused.Add(1)
		p.log.Info("image url refused", at, zap.Error(err))
		fail(w, http.StatusForbidden, msgNotAllowed)
	case errors.As(err, &ue):
		p.log.Debug("bad image url", at, zap.Error(err))
		fail(w, http.StatusBadRequest, ue.Error())
	case errors.As(err, &se):
		p.log.Debug("origin answer refused", at, zap.Error(err))
		fail(w, se.status, se.msg)
	case errors.As(err, &oe):
		p.log.Debug("origin fetch failed", at, zap.Error(err))
		fail(w, http.StatusBadGateway, msgOriginFailed)
	case errors.Is(err, errProxyClosed):
		fail(w, http.StatusServiceUnavailable, "image proxy: shutting down")
	case errors.As(err, new(*tiered.PanicError)):
		p.log.Error("origin fetch panicked", at, zap.Error(err))
		fail(w, http.StatusInternalServerError, "image proxy: internal error")
	case r.Context().Err() != nil:
		// The client went away: nobody reads the answer.
		fail(w, http.StatusServiceUnavailable, "image proxy: request cancelled")
	case isTimeout(err):
		p.log.Debug("origin timed out", at, zap.Error(err))
		fail(w, http.StatusGatewayTimeout, msgTimedOut)
	default:
		p.log.Debug("origin fetch failed", at, zap.Error(err))
		fail(w, http.StatusBadGateway, msgOriginFailed)
	}
}

// redactRedirect masks the password in the URL of a url.Error: after a redirect it is the
// origin's Location as sent, not the redacted URL the client puts there otherwise.
func redactRedirect(err error) error {
	ue, ok := err.(*url.Error)
	if !ok {
		return err
	}
	if u, perr := url.Parse(ue.URL); perr == nil && u.User != nil {
		masked := *ue
		masked.URL = u.Redacted()
		return &masked
	}
	return err
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// fail writes a plain-text error that no one caches.
func fail(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	setSafeHeaders(h)
	http.Error(w, msg, status)
}

// setSafeHeaders marks an answer as inert: the browser must not sniff another type from
// it, and a document made of it (opened directly) may load nothing and run nothing.
func setSafeHeaders(h http.Header) {
	h["Content-Security-Policy"] = []string{"default-src 'none'; sandbox"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
}
