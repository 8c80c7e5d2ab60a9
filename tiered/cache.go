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
	"time"
	"unsafe"

	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/synspirit/tiercache/bus"
	"github.com/synspirit/tiercache/internal/deadline"
)

// Cache is a two-tier cache: an in-process L1 in front of a shared Redis L2, kept coherent
// across every instance that shares the Redis. Use it through typed groups (NewGroup). A
// Cache is safe for concurrent use; Close it when done.
type Cache struct {
	opts      Options // with defaults applied
	redis     rueidis.Client
	ownsRedis bool
	mode      InvalidationMode // Tracking or BusOnly once New returns
	db        int              // the selected database, for keyspace notification channels
	log       *zap.Logger

	l1      *l1
	tracker *tracker // the invalidation listener in Tracking mode (nil otherwise, or on a caller's client)
	bus     *bus.Bus // nil with Options.DisableBus
	breaker breaker
	bounds  *deadline.Bounds // Options.Timeout per Redis call

	startedOffline bool // StartWithoutRedis, and Redis did not answer at New
	tlsOn          bool // the connection uses TLS (for the plain-to-TLS hint)

	genPrefix string                                  // <KeyPrefix>tiercache:gen:
	groupsMu  sync.Mutex                              // serialises register
	groups    atomic.Pointer[map[string][]*groupCore] // by name, copy on write
	flight    flight

	closeCtx   context.Context // cancelled by Close: ends loads in flight
	closeFn    context.CancelFunc
	closeOnce  sync.Once
	closed     atomic.Bool
	spawnMu    sync.RWMutex   // read-held while adding to wg; write-held by Close before it waits
	wg         sync.WaitGroup // loads and refreshes in flight, listener goroutines
	refreshing sync.Map       // keys being refreshed ahead by this instance

	st counters
}

// counters are the slow-path statistics (the L1 ones live in l1's shards).
type counters struct {
	l2Hits, l2Misses, l2Errors       atomic.Uint64
	loads, loadErrors                atomic.Uint64
	sets, deletes                    atomic.Uint64
	decodeErrors                     atomic.Uint64
	invLocal, invTracking, invRemote atomic.Uint64
	invKeyspace                      atomic.Uint64
	flushes, publishErrors           atomic.Uint64
	failSafeServed, lockWaits        atomic.Uint64
	refreshes, refreshErrors         atomic.Uint64
}

// New connects to Redis and returns a Cache. It fails on bad Options (ErrInvalidOptions),
// and when Redis cannot be reached or refuses the credentials (ErrUnavailable); with
// Options.StartWithoutRedis, an unreachable Redis is not an error: the cache starts as in an
// outage and connects when Redis answers.
func New(ctx context.Context, opts Options) (*Cache, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Cache{opts: o, log: o.Logger.Named("tiercache"), genPrefix: genKeyPrefix(o.KeyPrefix), bounds: deadline.New(o.Timeout)}
	c.breaker = breaker{
		threshold: int64(o.BreakerThreshold),
		cooldown:  o.BreakerCooldown,
		onOpen: func() {
			// Invalidations may be lost while Redis is unreachable, and entries filled
			// during the outage were never confirmed by Redis.
			c.flushL1()
			c.log.Warn("redis unreachable: circuit breaker open", zap.Duration("cooldown", o.BreakerCooldown))
		},
		onClose: func() {
			c.flushL1()
			c.log.Info("redis reachable again: circuit breaker closed")
		},
	}
	c.closeCtx, c.closeFn = context.WithCancel(context.Background())
	// The L1 exists before the client: rueidis may deliver invalidations as soon as it
	// connects.
	if c.l1, err = newL1(o.L1MaxBytes, o.DisableL1); err != nil {
		c.closeFn()
		return nil, fmt.Errorf("%w: L1: %v", ErrInvalidOptions, err)
	}
	if err := c.connect(ctx); err != nil {
		c.closeFn()
		c.wg.Wait()
		c.l1.close()
		return nil, err
	}
	if !o.DisableBus {
		if err := c.startBus(ctx); err != nil {
			if c.mode == BusOnly || o.KeyspaceNotifications {
				c.closeFn()
				c.wg.Wait()
				c.l1.close()
				c.closeClients()
				return nil, fmt.Errorf("%w: invalidation bus: %w", ErrUnavailable, err)
			}
			// Tracking still reports every key change, group generations included; only
			// Flush cannot reach the other instances.
			c.log.Warn("invalidation bus unavailable: Flush will not reach other instances", zap.Error(err))
		}
	} else if c.mode == BusOnly {
		c.log.Warn("no tracking and no bus: other instances' writes are seen only when L1 entries expire")
	}
	ttlCap := o.L1TTL
	if c.mode == BusOnly && ttlCap == 0 {
		ttlCap = DefaultBusOnlyL1TTL
	}
	c.l1.ttlCap = ttlCap
	c.l1.maxStale = o.FailSafeMaxStale
	c.l1.eager = o.EagerRefresh
	c.log.Info("cache ready", zap.Stringer("invalidation", c.mode), zap.String("key_prefix", o.KeyPrefix),
		zap.Int64("l1_max_bytes", o.L1MaxBytes), zap.Bool("l1", !o.DisableL1), zap.Duration("l1_ttl_cap", ttlCap),
		zap.Bool("redis_reachable", !c.startedOffline))
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

// TrackingOptions are the CLIENT TRACKING arguments the cache uses for keyPrefix: broadcast
// mode on the prefix (see tracking.go for why). Give them to a rueidis client of your own
// (ClientOption.ClientTrackingOptions) together with OnInvalidations calling
// (*Cache).HandleInvalidations to run a Cache on it in Tracking mode.
func TrackingOptions(keyPrefix string) []string {
	opts := []string{"BCAST"}
	if keyPrefix != "" {
		opts = append(opts, "PREFIX", keyPrefix)
	}
	return opts
}

func (c *Cache) connect(ctx context.Context) error {
	o := c.opts
	if o.Redis != nil {
		c.redis = o.Redis
		c.mode = o.Invalidation
		if c.mode == Auto {
			c.mode = BusOnly
		}
		c.l1.live.Store(true)
		return nil
	}
	opt, err := ParseRedisURL(o.RedisURL)
	if err != nil {
		return err
	}
	if opt.TLSConfig != nil && o.TLSConfig != nil {
		server := opt.TLSConfig.ServerName
		opt.TLSConfig = o.TLSConfig.Clone()
		if opt.TLSConfig.ServerName == "" {
			opt.TLSConfig.ServerName = server
		}
	}
	if opt.ClientName == "" {
		opt.ClientName = "tiercache"
	}
	c.db = opt.SelectDB
	c.tlsOn = opt.TLSConfig != nil
	// rueidis's defaults (5 s to dial, 10 s without a reply before a connection is given
	// up) suit a database; a cache should notice a dead server sooner. Our own per-call
	// deadline bounds each call either way; these bound how long a broken connection lives.
	if opt.Dialer.Timeout == 0 {
		opt.Dialer.Timeout = max(10*o.Timeout, time.Second)
	}
	if opt.ConnWriteTimeout == 0 {
		opt.ConnWriteTimeout = max(10*o.Timeout, time.Second)
	}
	if o.StartWithoutRedis {
		switch {
		case len(opt.InitAddress) != 1 || opt.Sentinel.MasterSet != "":
			return fmt.Errorf("%w: StartWithoutRedis needs RedisURL to name one standalone server", ErrInvalidOptions)
		case opt.AlwaysRESP2 || opt.DisableCache:
			return fmt.Errorf("%w: StartWithoutRedis needs RESP3 and tracking (the URL asks for RESP2 or no client cache)", ErrInvalidOptions)
		}
	}
	c.mode = o.Invalidation
	if opt.AlwaysRESP2 || opt.DisableCache {
		if c.mode == Tracking {
			return fmt.Errorf("%w: Invalidation is Tracking but the URL asks for RESP2 or no client cache", ErrInvalidOptions)
		}
		c.mode = BusOnly
	}
	if c.mode != BusOnly {
		err := c.startTracker(ctx, opt)
		switch {
		case err == nil:
			c.mode = Tracking
		case c.mode == Auto && trackingRefused(err):
			c.log.Warn("redis refused server-assisted client-side caching; invalidating through the bus only, with a capped L1 TTL",
				zap.String("reason", err.Error()))
			c.mode = BusOnly
		default:
			return plainToTLSHint(connectError(err), opt.TLSConfig != nil)
		}
	}
	opt.DisableCache = true
	client, err := c.newClient(ctx, opt)
	if err != nil && !c.mayStartWithout(ctx, client, err) {
		if client != nil {
			client.Close()
		}
		if c.tracker != nil {
			c.tracker.close()
		}
		return plainToTLSHint(connectError(err), opt.TLSConfig != nil)
	}
	c.redis, c.ownsRedis = client, true
	if c.mode == BusOnly {
		c.l1.live.Store(true)
	}
	return nil
}

// newClient is rueidis.NewClient, except that with StartWithoutRedis a server that does not
// answer still gets a client (a single-node one, which dials again on each use). A server
// that answers gets the client rueidis picks for it (cluster detection included).
func (c *Cache) newClient(ctx context.Context, opt rueidis.ClientOption) (rueidis.Client, error) {
	client, err := rueidis.NewClient(opt)
	if err == nil || !c.opts.StartWithoutRedis || ctx.Err() != nil || !unreachable(err) {
		return client, err
	}
	if client != nil {
		client.Close()
	}
	opt.ForceSingleClient = true
	return rueidis.NewClient(opt)
}

// mayStartWithout tells whether New may go on without Redis after err: StartWithoutRedis is
// set, rueidis made a client anyway, and err says that Redis did not answer (not that it
// refused the credentials, or that TLS failed). It records that the cache starts offline.
func (c *Cache) mayStartWithout(ctx context.Context, client rueidis.Client, err error) bool {
	if !c.opts.StartWithoutRedis || client == nil || ctx.Err() != nil || !unreachable(err) {
		return false
	}
	if !c.startedOffline {
		c.startedOffline = true
		c.log.Warn("redis unreachable at start: running without it until it answers (L1 off until then)",
			zap.Error(plainToTLSHint(err, c.tlsOn)))
	}
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

func connectError(err error) error {
	var re *rueidis.RedisError
	if errors.As(err, &re) {
		msg := re.Error()
		if strings.Contains(msg, "WRONGPASS") || strings.Contains(msg, "NOAUTH") {
			return fmt.Errorf("%w: authentication failed: %s", ErrUnavailable, msg)
		}
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

// Redis returns the client the cache uses, for packages that talk to Redis directly
// (counter). Do not close it.
func (c *Cache) Redis() rueidis.Client { return c.redis }

// Mode is the invalidation mechanism in use: Tracking or BusOnly.
func (c *Cache) Mode() InvalidationMode { return c.mode }

// Close stops the cache: it cancels loads in flight and waits for them, closes the Redis
// client if the cache dialled it, and releases the L1. It is idempotent; calls after Close
// fail with ErrClosed (GetOrLoad still runs the loader).
func (c *Cache) Close() error {
	c.closeOnce.Do(func() {
		c.spawnMu.Lock() // no goroutine is added to wg after this
		c.closed.Store(true)
		c.closeFn()
		c.spawnMu.Unlock()
		if c.bus != nil {
			_ = c.bus.Close()
		}
		c.wg.Wait()
		c.l1.close()
		c.closeClients()
	})
	return nil
}

func (c *Cache) closeClients() {
	if c.tracker != nil {
		c.tracker.close()
	}
	if c.ownsRedis && c.redis != nil {
		c.redis.Close()
	}
}

// isClosed is on the hit path: an atomic load, not closeCtx.Err (which takes a lock).
func (c *Cache) isClosed() bool { return c.closed.Load() }

// spawn runs fn on a goroutine that Close waits for, unless the cache is closed.
func (c *Cache) spawn(fn func()) bool {
	c.spawnMu.RLock()
	defer c.spawnMu.RUnlock()
	if c.isClosed() {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn()
	}()
	return true
}

// HandleInvalidations is rueidis's OnInvalidations callback: keys Redis reports as changed
// (by anyone: a write, an expiry, an eviction), or nil when every key must be assumed
// changed (a FLUSHALL, or a dropped connection whose invalidations are lost). It runs on
// rueidis's reader goroutine, so it only bumps counters and marks group generations as
// unknown: no lock, no blocking, and no allocation but a small stale marker per group when
// a generation key or a flush is reported.
func (c *Cache) HandleInvalidations(keys []rueidis.RedisMessage) {
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
	c.l1.flush()
	c.invalidateAllGroupGens()
	c.st.flushes.Add(1)
}

// do runs one Redis command under the per-call deadline and the breaker. Errors reaching
// Redis wrap ErrUnavailable; a Redis nil is returned as is (rueidis.IsRedisNil).
//
// Commands are pinned: rueidis recycles a command's buffer when Do returns, and under
// connection resets the race detector caught a recycled buffer being rebuilt while a
// finished connection's writer had read it without a happens-before edge. A pinned command
// costs one allocation, and can never be rewritten under a writer.
func (c *Cache) do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	ok, probe := c.breaker.allow()
	if !ok {
		return rueidis.NewErrorResult(errBreakerOpen)
	}
	cctx, cancel := c.withTimeout(ctx)
	res := c.redis.Do(cctx, cmd.Pin())
	cancel()
	c.account(ctx, res.Error(), probe)
	return res
}

// withTimeout bounds a Redis call by Options.Timeout: a shared deadline when ctx cannot be
// cancelled (no timer per call), the caller's own when it comes first (internal/deadline).
func (c *Cache) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return c.bounds.Context(ctx)
}

var errBreakerOpen = fmt.Errorf("%w: circuit breaker open", ErrUnavailable)

// account feeds the outcome of a Redis call to the breaker.
func (c *Cache) account(ctx context.Context, err error, probe bool) {
	switch {
	case err == nil || rueidis.IsRedisNil(err):
		c.breaker.success(probe)
	case isRedisReply(err):
		c.breaker.success(probe) // Redis answered: it is up
	case ctx.Err() != nil:
		c.breaker.abandon(probe) // the caller gave up: says nothing about Redis
	default:
		c.breaker.failure(probe)
	}
}

func isRedisReply(err error) bool {
	var re *rueidis.RedisError
	return errors.As(err, &re)
}

// redisErr wraps a failed call's error for the caller.
func redisErr(op string, err error) error {
	if errors.Is(err, ErrUnavailable) || isRedisReply(err) {
		return fmt.Errorf("tiered: %s: %w", op, err)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("tiered: %s: %w", op, err)
	}
	return fmt.Errorf("tiered: %s: %w: %w", op, ErrUnavailable, err)
}

// l2Get reads a raw envelope. The bytes are a view of the reply's memory: decode them, do
// not keep them.
func (c *Cache) l2Get(ctx context.Context, key string) ([]byte, error) {
	res := c.do(ctx, c.redis.B().Get().Key(key).Build())
	s, err := res.ToString()
	if err != nil {
		if rueidis.IsRedisNil(err) {
			c.st.l2Misses.Add(1)
			return nil, ErrNotFound
		}
		c.st.l2Errors.Add(1)
		return nil, redisErr("get", err)
	}
	c.st.l2Hits.Add(1)
	return unsafe.Slice(unsafe.StringData(s), len(s)), nil
}

func (c *Cache) l2Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	cmd := c.redis.B().Set().Key(key).Value(rueidis.BinaryString(value)).PxMilliseconds(max(ttl.Milliseconds(), 1)).Build()
	if err := c.do(ctx, cmd).Error(); err != nil {
		c.st.l2Errors.Add(1)
		return redisErr("set", err)
	}
	return nil
}

// l2Del deletes keys, one DEL per key so that keys in different cluster slots work.
func (c *Cache) l2Del(ctx context.Context, keys []string) error {
	ok, probe := c.breaker.allow()
	if !ok {
		return redisErr("delete", errBreakerOpen)
	}
	cmds := make(rueidis.Commands, 0, len(keys))
	for _, k := range keys {
		cmds = append(cmds, c.redis.B().Del().Key(k).Build().Pin())
	}
	cctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var first error
	for _, r := range c.redis.DoMulti(cctx, cmds...) {
		if err := r.Error(); err != nil && first == nil {
			first = err
		}
	}
	c.account(ctx, first, probe)
	if first != nil {
		c.st.l2Errors.Add(1)
		return redisErr("delete", first)
	}
	return nil
}
