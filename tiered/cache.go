package tiered

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/synspirit/tiercache/bus"
	"github.com/synspirit/tiercache/internal/flight"
	"github.com/synspirit/tiercache/internal/l1"
	"github.com/synspirit/tiercache/internal/lifetime"
	"github.com/synspirit/tiercache/internal/rcall"
)

// Cache is a two-tier cache: an in-process L1 in front of a shared Redis L2, kept coherent
// across every instance that shares the Redis. Use it through typed groups ([NewGroup]). A
// Cache is safe for concurrent use; [Cache.Close] it when done.
type Cache struct {
	opts      Options          // with defaults applied
	mode      InvalidationMode // Tracking or BusOnly once New returns
	db        int              // the selected database, for keyspace notification channels
	genPrefix string           // <KeyPrefix>tiercache:gen:, the group generation keys
	hash      hasher           // the L1's keys
	log       *zap.Logger

	life      *lifetime.Lifetime // Close: loads, refreshes, listeners, counters built on the cache
	breaker   *rcall.Breaker
	caller    *rcall.Caller // every Redis call of the cache but ownCaller's
	ownCaller *rcall.Caller // writes whose values this instance keeps in L1, on the listener's connection (see ownWriter)
	redis     rueidis.Client
	client    *rcall.Client // redis, as handed out by Redis()
	owns      bool          // the cache dialled redis and closes it

	l1      *l1.L1
	tracker *tracker // the invalidation listener in Tracking mode (nil otherwise, or on a caller's client)
	bus     *bus.Bus // nil with Options.DisableBus

	startedOffline atomic.Bool // StartWithoutRedis, and Redis did not answer at New

	groups     registry
	tags       *tagTable
	flight     *flight.Group[any]
	republish  republisher
	busSeq     map[string]uint64 // last sequence number heard from each sender; the bus's receive goroutine only
	refreshing sync.Map          // keys being refreshed ahead by this instance
	wrote      localWrites       // this instance's writes by key stripe, for the loads in flight (see storeCond)
	closeOnce  sync.Once

	st counters
}

// counters are the slow-path statistics (the L1's live in the L1).
type counters struct {
	l2Hits, l2Misses, l2Errors atomic.Uint64
	loads, loadErrors          atomic.Uint64
	loadsYielded               atomic.Uint64
	sets, deletes              atomic.Uint64
	decodeErrors               atomic.Uint64
	invLocal, invTracking      atomic.Uint64
	invBus, invKeyspace        atomic.Uint64
	flushes, publishErrors     atomic.Uint64
	failSafeServed, lockWaits  atomic.Uint64
	refreshes, refreshErrors   atomic.Uint64
	tooLarge, gensLost         atomic.Uint64
	republished                atomic.Uint64
	tagsInvalidated, tagStale  atomic.Uint64
}

// New connects to Redis and returns a Cache. It fails on bad Options (ErrInvalidOptions),
// and when Redis cannot be reached or refuses the credentials (ErrUnavailable); with
// Options.StartWithoutRedis, an unreachable Redis is not an error: the cache starts as in an
// outage and connects when Redis answers.
func New(ctx context.Context, opts Options) (*Cache, error) {
	p, err := makePlan(opts)
	if err != nil {
		return nil, err
	}
	c := &Cache{opts: p.opts, mode: p.mode, db: p.client.SelectDB, genPrefix: genKeyPrefix(p.opts.KeyPrefix), hash: newHasher(), log: p.opts.Logger.Named("tiercache"), life: lifetime.New()}
	c.flight = flight.New[any](c.life)
	c.tags = newTagTable(p.opts.KeyPrefix)
	c.breaker = rcall.NewBreaker(rcall.BreakerOptions{
		Threshold: p.opts.BreakerThreshold, MinSpan: rcall.DefaultMinFailureSpan, Cooldown: p.opts.BreakerCooldown,
		OnOpen: c.onBreakerOpen, OnClose: c.onBreakerClose,
	})

	// 1. The listener first: whether Redis grants tracking decides the mode.
	if p.listen {
		c.tracker, err = dialTracker(ctx, p, c.log)
		switch {
		case err == nil:
			c.mode = Tracking
		case p.mode == Auto && trackingRefused(err):
			c.log.Warn("redis refused server-assisted client-side caching; invalidating through the bus only, with a capped L1 TTL",
				zap.String("reason", err.Error()))
			c.mode = BusOnly
		default:
			return nil, plainToTLSHint(connectError(ctx, err), p.tlsOn)
		}
		c.startedOffline.Store(c.tracker != nil && !c.tracker.up)
	}

	// 2. The data client.
	if p.opts.Redis != nil {
		c.redis = p.opts.Redis
	} else {
		client, err := newClient(ctx, p, p.client, c.log)
		if err != nil && (client == nil || !mayStartWithout(ctx, p, err, c.log)) {
			if client != nil {
				client.Close()
			}
			c.closeClients()
			return nil, plainToTLSHint(connectError(ctx, err), p.tlsOn)
		}
		c.redis, c.owns = client, true
		if err != nil {
			c.startedOffline.Store(true)
		}
	}
	callerOpts := rcall.Options{
		Timeout: p.opts.Timeout, Breaker: c.breaker, Life: c.life,
		Unavailable: ErrUnavailable, Closed: ErrClosed, Observe: p.opts.redisObserve(),
	}
	c.caller = rcall.New(c.redis, callerOpts)
	if c.tracker != nil {
		c.ownCaller = rcall.New(c.tracker.client, callerOpts)
	}
	c.client = rcall.Wrap(c.redis, c.caller)

	// 3. The L1, now that the mode is known. With a listener it stays off until attach
	// has checked that the listener is up.
	c.l1, err = l1.New(l1.Config{
		MaxBytes:     p.opts.L1MaxBytes,
		Disabled:     p.opts.DisableL1,
		TTLCap:       p.l1TTLCap(c.mode),
		MaxStale:     p.opts.FailSafeMaxStale,
		EagerRefresh: p.opts.EagerRefresh,
		Live:         c.tracker == nil,
		ExactHits:    p.opts.ExactL1Stats,
	})
	if err != nil {
		c.closeClients()
		return nil, fmt.Errorf("%w: L1: %v", ErrInvalidOptions, err)
	}
	if c.tracker != nil {
		c.tracker.attach(c)
	}

	// 4. The bus.
	if !p.opts.DisableBus {
		if err := c.startBus(ctx); err != nil {
			if c.mode == BusOnly || p.opts.KeyspaceNotifications {
				_ = c.Close()
				return nil, fmt.Errorf("%w: invalidation bus: %w", ErrUnavailable, err)
			}
			// Tracking still reports every key change, group generations included; only
			// Flush cannot reach the other instances.
			c.log.Warn("invalidation bus unavailable: Flush will not reach other instances", zap.Error(err))
		}
	} else if c.mode == BusOnly {
		c.log.Warn("no tracking and no bus: other instances' writes are seen only when L1 entries expire")
	}
	c.log.Info("cache ready", zap.Stringer("invalidation", c.mode), zap.String("key_prefix", p.opts.KeyPrefix),
		zap.Int64("l1_max_bytes", p.opts.L1MaxBytes), zap.Bool("l1", !p.opts.DisableL1), zap.Duration("l1_ttl_cap", p.l1TTLCap(c.mode)),
		zap.Bool("redis_reachable", !c.startedOffline.Load()))
	return c, nil
}

// NewFromEnv is New with Options read from the original design's environment variables:
// REDIS_URL, CACHE_KEY_PREFIX and CACHE_DEFAULT_TIMEOUT (seconds).
func NewFromEnv(ctx context.Context) (*Cache, error) {
	o, err := NewFromEnvOptions()
	if err != nil {
		return nil, err
	}
	return New(ctx, o)
}

// trackingOptions are the CLIENT TRACKING arguments of broadcast mode on the whole
// keyPrefix (the listener's, past maxTrackedPrefixes groups).
func trackingOptions(keyPrefix string) []string {
	opts := []string{"BCAST", "NOLOOP"}
	if keyPrefix != "" {
		opts = append(opts, "PREFIX", keyPrefix)
	}
	return opts
}

func (c *Cache) onBreakerOpen() {
	// Invalidations may be lost while Redis is unreachable, and entries filled during the
	// outage were never confirmed by Redis.
	c.flushL1()
	c.log.Warn("redis unreachable: circuit breaker open", zap.Duration("cooldown", c.opts.BreakerCooldown))
}

func (c *Cache) onBreakerClose() {
	c.flushL1()
	c.log.Info("redis reachable again: circuit breaker closed")
}

// newClient is rueidis.NewClient, except that with StartWithoutRedis a server that does not
// answer still gets a client (a single-node one, which dials again on each use). A server
// that answers gets the client rueidis picks for it (cluster detection included).
func newClient(ctx context.Context, p plan, opt rueidis.ClientOption, log *zap.Logger) (rueidis.Client, error) {
	client, err := rueidis.NewClient(opt)
	if err == nil || !p.offlineOK || ctx.Err() != nil || !unreachable(err) {
		return client, err
	}
	if client != nil {
		client.Close()
	}
	opt.ForceSingleClient = true
	return rueidis.NewClient(opt)
}

// mayStartWithout tells whether New may go on without Redis after err: StartWithoutRedis is
// set and err says that Redis did not answer (not that it refused the credentials, or that
// TLS failed).
func mayStartWithout(ctx context.Context, p plan, err error, log *zap.Logger) bool {
	if !p.offlineOK || ctx.Err() != nil || !unreachable(err) {
		return false
	}
	log.Warn("redis unreachable at start: running without it until it answers (L1 off until then)",
		zap.Error(plainToTLSHint(err, p.tlsOn)))
	return true
}

// unreachable tells an error of a server that did not answer from one that answered: a
// Redis error reply (bad credentials, a refused CLIENT TRACKING), a certificate error or a
// TLS alert. Only the first is an outage. A reset or EOF could be either (a plain-text
// client at a TLS-only port gets one): it counts as an outage, and the warning says so.
func unreachable(err error) bool {
	var re *rueidis.RedisError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var header tls.RecordHeaderError
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" { // a TLS alert from the server
		return false
	}
	return !errors.As(err, &re) && !errors.Is(err, rueidis.ErrNoCache) && !errors.As(err, &unknownCA) &&
		!errors.As(err, &hostname) && !errors.As(err, &invalid) && !errors.As(err, &header)
}

// trackingRefused tells a server (or proxy) without RESP3 or CLIENT TRACKING from other
// connection failures, which must not be papered over.
func trackingRefused(err error) bool {
	if errors.Is(err, rueidis.ErrNoCache) {
		return true
	}
	var re *rueidis.RedisError
	if !errors.As(err, &re) {
		return false
	}
	msg := strings.ToUpper(re.Error())
	if strings.Contains(msg, "WRONGPASS") || strings.Contains(msg, "NOAUTH") {
		return false
	}
	return strings.Contains(msg, "TRACKING") || strings.Contains(msg, "HELLO") ||
		strings.Contains(msg, "UNKNOWN COMMAND") || strings.Contains(msg, "NOPERM")
}

func connectError(ctx context.Context, err error) error {
	if ctx.Err() != nil { // the caller's own context ended: not an outage
		return fmt.Errorf("tiered: connecting: %w", ctx.Err())
	}
	var re *rueidis.RedisError
	if errors.As(err, &re) {
		msg := re.Error()
		if strings.Contains(msg, "WRONGPASS") || strings.Contains(msg, "NOAUTH") {
			return fmt.Errorf("%w: authentication failed: %s", ErrUnavailable, msg)
		}
	}
	if errors.Is(err, ErrUnavailable) {
		return &opError{op: "connecting", err: err}
	}
	return fmt.Errorf("%w: connecting: %w", ErrUnavailable, err)
}

// plainToTLSHint explains the usual cause of a connection reset at the first command.
func plainToTLSHint(err error, tlsOn bool) error {
	if !tlsOn && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)) {
		return fmt.Errorf("%w (is the server TLS-only? use rediss:// or ?ssl=true)", err)
	}
	return err
}

// Redis returns the client the cache uses, for packages that talk to Redis directly.
// Counters and buses built on it (counter.New, bus.New) share the cache's circuit breaker,
// and stop with ErrClosed when the cache is closed. Its Close does nothing: [Cache.Close]
// closes the client, when the cache dialled it.
func (c *Cache) Redis() rueidis.Client { return c.client }

// Mode is the invalidation mechanism in use: Tracking or BusOnly.
func (c *Cache) Mode() InvalidationMode { return c.mode }

// KeyPrefix is Options.KeyPrefix.
func (c *Cache) KeyPrefix() string { return c.opts.KeyPrefix }

// Close stops the cache: calls fail with ErrClosed from now on ([Group.GetOrLoad] still runs
// its loader), loads, refreshes and listeners in flight are cancelled and waited for, and
// the Redis client is closed if the cache dialled it. Redis calls in flight are cancelled too
// and return ErrClosed: a write cut off that way may or may not have reached Redis. It is
// idempotent.
func (c *Cache) Close() error {
	c.closeOnce.Do(func() {
		c.life.Stop()
		if c.bus != nil {
			_ = c.bus.Close()
		}
		c.life.Wait()
		if c.l1 != nil {
			c.l1.Close()
		}
		c.closeClients()
	})
	return nil
}

func (c *Cache) closeClients() {
	if c.tracker != nil {
		c.tracker.close()
	}
	if c.owns && c.redis != nil {
		c.redis.Close()
	}
}

// isClosed is on the hit path: one atomic load.
func (c *Cache) isClosed() bool { return c.life.Closed() }

// handleInvalidations takes what the tracking listener reports: keys Redis reports as
// changed (by anyone: a write, an expiry, an eviction), or nil when every key must be
// assumed changed (a FLUSHALL, or a dropped connection whose invalidations are lost). It runs
// on rueidis's reader goroutine, so it only marks L1 entries and group generations as stale:
// no lock of ours, no blocking, and no allocation but a small stale marker per group when a
// generation key or a flush is reported.
func (c *Cache) handleInvalidations(keys []rueidis.RedisMessage) {
	if keys == nil {
		c.flushL1()
		return
	}
	for i := range keys {
		if k, err := keys[i].ToString(); err == nil {
			c.invalidateRedisKey(k)
		}
	}
	c.st.invTracking.Add(uint64(len(keys)))
}

func (c *Cache) flushL1() {
	c.l1.Flush()
	c.groups.forgetAllGens()
	c.tags.forgetAll()
	c.st.flushes.Add(1)
}
