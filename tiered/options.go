package tiered

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/synspirit/tiercache/internal/sentinel"
)

// Defaults of Options. Each is used when its field is left at the zero value.
const (
	// DefaultRedisURL is used when neither Options.RedisURL nor Options.Redis is set (the
	// original design's REDIS_URL default).
	DefaultRedisURL = "redis://localhost:6379/0"
	// DefaultTTL is the L2 TTL of groups created with ttl 0 (the original CACHE_DEFAULT_TIMEOUT).
	DefaultTTL = 300 * time.Second
	// DefaultL1MaxBytes is the L1 budget: the sum of the encoded sizes of its entries.
	DefaultL1MaxBytes = 64 << 20
	// DefaultTimeout is the deadline of every Redis call.
	DefaultTimeout = 100 * time.Millisecond
	// DefaultBusOnlyL1TTL caps the life of an L1 entry when no server-assisted tracking is
	// available: it bounds how long a lost bus message can leave a stale value.
	DefaultBusOnlyL1TTL = 30 * time.Second
	// DefaultBreakerThreshold is how many consecutive Redis failures open the breaker.
	DefaultBreakerThreshold = 5
	// DefaultBreakerCooldown is how long the breaker stays open before it lets one probe through.
	DefaultBreakerCooldown = time.Second
	// DefaultMaxValueBytes is the largest encoded value a group stores (Options.MaxValueBytes).
	DefaultMaxValueBytes = 4 << 20
	// MaxValueBytesLimit is the largest MaxValueBytes accepted: Redis's own limit on one
	// value (proto-max-bulk-len), less the cache's header.
	MaxValueBytesLimit = 512<<20 - envelopeHeaderSize
	// MaxTTL is the longest TTL anything accepts: DefaultTTL, a group's TTL, TTL(d),
	// FailSafeMaxStale, L1TTL, LoadLockTTL. Longer ones are refused, never wrapped.
	MaxTTL = 10 * 365 * 24 * time.Hour
)

// InvalidationMode selects how L1 entries learn that a newer write exists.
type InvalidationMode int

const (
	// Auto uses Redis server-assisted client-side caching (CLIENT TRACKING, RESP3) and falls
	// back to BusOnly when the server or a proxy refuses it. It is the zero value.
	Auto InvalidationMode = iota
	// Tracking requires server-assisted tracking: New fails when it is not available.
	Tracking
	// BusOnly relies on the pub/sub bus alone, and caps L1 TTL (Options.L1TTL, default
	// DefaultBusOnlyL1TTL) to bound the staleness of a lost message.
	BusOnly
)

func (m InvalidationMode) String() string {
	switch m {
	case Auto:
		return "auto"
	case Tracking:
		return "tracking"
	case BusOnly:
		return "bus-only"
	}
	return "InvalidationMode(" + strconv.Itoa(int(m)) + ")"
}

// MarshalText is the mode's String.
func (m InvalidationMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText parses what MarshalText writes.
func (m *InvalidationMode) UnmarshalText(b []byte) error {
	for _, v := range []InvalidationMode{Auto, Tracking, BusOnly} {
		if v.String() == string(b) {
			*m = v
			return nil
		}
	}
	return fmt.Errorf("tiered: unknown invalidation mode %q", b)
}

// Options configure a Cache. The zero value is usable: it connects to DefaultRedisURL with
// an L1 of DefaultL1MaxBytes and tracking-based coherence.
type Options struct {
	// RedisURL is the Redis to use: redis://[user:password@]host[:port][/db], rediss:// for
	// TLS (the original redis://…?ssl=true is accepted as an alias), several hosts for a
	// cluster as redis://a:1,b:2,c:3 or ?addr=b:2&addr=c:3, and ?master_set=name for
	// Sentinel (the hosts are then the sentinels). protocol=2 forces RESP2, which has no
	// client-side caching and so means BusOnly. Ignored when Redis is set.
	RedisURL string

	// Redis is a client of the caller's to use instead of dialling RedisURL. Close does not
	// close it. The cache cannot listen for tracking invalidations on a client it did not
	// make (rueidis fixes a client's invalidation callback when the client is created), so on
	// a caller's client it runs BusOnly: Invalidation Auto means BusOnly, and Tracking is
	// ErrInvalidOptions (give RedisURL instead, and the cache dials its own listener).
	Redis rueidis.Client

	// TLSConfig is used for rediss:// URLs (and ssl=true); nil means the system roots.
	TLSConfig *tls.Config

	// KeyPrefix is put before every Redis key the cache writes, e.g. "synspirit:". It is
	// also where server-assisted tracking watches: each group that keeps values in L1 is
	// tracked under <KeyPrefix><name>@ (BCAST PREFIX).
	KeyPrefix string

	// DefaultTTL is the L2 TTL of groups created with ttl 0. Default DefaultTTL.
	DefaultTTL time.Duration

	// L1MaxBytes bounds the in-process L1 by the encoded size of its entries, each charged
	// 256 bytes more for what holding it costs: ristretto's record of it (~100 bytes) and its
	// entry, which shares a slab with 7 others and costs ~180 bytes of slabs in a full L1
	// whose entries churn (32 when they do not). The decoded value itself is not measured:
	// its encoded size stands for it. Default DefaultL1MaxBytes.
	// Tune it to the working set: ristretto admits by frequency, so a too-small L1 keeps only
	// the hottest keys rather than thrashing. Its admission counters take about a tenth of
	// L1MaxBytes on top, allocated at New, and at most ~40 MiB.
	L1MaxBytes int64

	// DisableL1 turns the in-process tier off: every read goes to Redis.
	DisableL1 bool

	// ExactL1Stats counts every L1 hit in Stats. By default, hits of the hottest keys (those
	// read lock-free) are sampled, one in 16 counted as 16: an atomic add per hit on a line
	// that every core writes would cost more than the hit itself. Misses are always exact.
	ExactL1Stats bool

	// L1TTL caps how long an entry lives in L1; an entry never outlives its L2 entry either
	// way. Zero means no cap beyond the L2 TTL, or DefaultBusOnlyL1TTL in BusOnly mode.
	L1TTL time.Duration

	// Timeout is the deadline of every Redis call. Default DefaultTimeout. Keep it well
	// under your request budget: on a Redis outage each call costs at most this much until
	// the breaker opens. A Get, Set or Delete whose context cannot be cancelled
	// (context.Background, context.WithoutCancel) shares one deadline with the calls that
	// start in the same window of Timeout/16 (at least 100 µs) instead of starting a timer of
	// its own: it gets at least Timeout and at most one window more. A cancellable context
	// gets a context.WithTimeout of its own, as do GetOrLoad's loads (cancelled when every
	// waiter has left) and eager refreshes (cancelled by Close).
	Timeout time.Duration

	// BreakerThreshold is how many consecutive Redis failures, over at least 10 ms, open the
	// circuit breaker; default DefaultBreakerThreshold. (One dropped connection fails every
	// call in flight on it at the same moment: that is not an outage.) Counters built on the
	// cache (counter.FromCache) share it. BreakerCooldown is how long it then stays open before
	// one probe call is let through; default DefaultBreakerCooldown.
	BreakerThreshold int
	BreakerCooldown  time.Duration

	// FailSafeMaxStale turns on stale-if-error: entries are kept in Redis and L1 this long
	// past their TTL, and GetOrLoad serves such a stale value when the loader fails, or
	// when both Redis and the loader do (from this instance's L1, if no newer write to the
	// key is known). Never beyond the bound; every such answer is counted in
	// Stats.FailSafeServed. Zero (the default) turns it off. Get never returns stale values.
	FailSafeMaxStale time.Duration

	// LoadLockTTL turns on distributed stampede protection: a cold key's loader runs once
	// across all instances rather than once per instance. The first instance to miss holds
	// a lock in Redis while it loads (at most LoadLockTTL: set it above your slowest load);
	// the others poll Redis for the value. Zero (the default) turns it off.
	LoadLockTTL time.Duration

	// EagerRefresh turns on refresh-ahead: once an entry has lived this fraction of its
	// TTL (e.g. 0.8), a GetOrLoad that hits it in L1 still returns it at once, and starts
	// one background load that replaces it before it expires — one per key per instance,
	// and one across instances (a short lock in Redis). The instance that refreshed keeps
	// the new value in L1; the others drop the old one and read the new from Redis. A
	// refresh whose key is written meanwhile (heard by the refreshing instance before its
	// load returns) is dropped: the write stands. Zero (the default) turns it off;
	// otherwise it must be in (0, 1).
	EagerRefresh float64

	// Invalidation selects the coherence mechanism; default Auto.
	Invalidation InvalidationMode

	// StartWithoutRedis lets New succeed while Redis cannot be reached (a refused, reset or
	// timed-out connection; an answer from Redis, such as bad credentials or a refused CLIENT
	// TRACKING, and a certificate error or TLS alert still fail New). The cache then starts as it
	// runs during an outage: Get and Set return ErrUnavailable, GetOrLoad serves from its
	// loader, L1 stays off. It connects by itself once Redis answers, and turns L1 on when
	// its invalidation listener is connected. Clients made on Redis() (counters) work from
	// the start and return ErrUnavailable until then.
	//
	// When Redis is down at New, the cache assumes a standalone server in Tracking mode: one
	// address in RedisURL, no sentinel, RESP3, Invalidation Auto or Tracking, no keyspace
	// notifications (other settings are ErrInvalidOptions). A cluster's topology, a
	// sentinel's master or whether a server grants tracking cannot be learnt from a server
	// that does not answer; if it turns out to refuse tracking, L1 stays off (logged). When
	// Redis answers at New, it is detected as usual.
	StartWithoutRedis bool

	// DisableBus turns the pub/sub invalidation bus off. With tracking, only Flush then
	// stays local; without tracking, other instances' writes are seen only when L1 entries
	// expire (L1TTL). For a single instance, or a Redis that forbids pub/sub.
	DisableBus bool

	// KeyspaceNotifications also listens to Redis keyspace notifications for expired and
	// evicted keys (__keyevent@<db>__:expired and :evicted) and drops them from L1: the
	// original design's fallback for servers that have notifications but no tracking. The
	// server must have notify-keyspace-events including "Exe"; the cache does not change
	// server configuration unless ConfigureKeyspaceNotifications is set too (which needs the
	// right to run CONFIG SET). Not available with DisableBus, nor on a cluster (keyspace
	// notifications are per node).
	KeyspaceNotifications          bool
	ConfigureKeyspaceNotifications bool

	// Codec encodes group values for L2 unless a group sets its own. Default JSON.
	Codec Codec

	// MaxValueBytes is the largest encoded value a group stores, unless the group sets its
	// own (WithMaxValueBytes). Default DefaultMaxValueBytes. A larger value is refused with
	// ErrTooLarge before anything is sent to Redis: Set returns the error, GetOrLoad returns
	// the loaded value with it. Calls that may move values larger than 4 MiB get Timeout
	// plus 1 s per 16 MiB beyond that, so that a slow transfer is not taken for an outage.
	MaxValueBytes int64

	// Logger receives start-up decisions and errors that are not returned (a failed
	// background write, a corrupt value in Redis). Default: no logging.
	Logger *zap.Logger

	// Observer, if set, is told how long each loader call and each Redis call took, for
	// latency histograms (package github.com/synspirit/tiercache/otelmetrics makes one for
	// OpenTelemetry). Counts need none: see Cache.Stats and Cache.GroupStats. Default: none,
	// and no clock is read for it.
	Observer Observer
}

// Observer receives the durations of a Cache's loads and Redis calls (Options.Observer).
// Its methods run on the goroutine whose call just ended, once per call, concurrently from
// many goroutines: they must be safe for concurrent use, quick, and must not block.
type Observer interface {
	// LoadDone: a loader of group (GetOrLoad, GetOrLoadMany, an eager refresh) returned
	// after d, with err (nil on success; a *PanicError if it panicked; matching ErrNotFound
	// for a miss it reported).
	LoadDone(group string, d time.Duration, err error)
	// RedisCallDone: a Redis command sent by the cache, or by counters or a bus built on it,
	// was answered after d. command is its name ("GET", "EVALSHA"), or for a pipeline
	// "BATCH <name>" when its commands share a name and "BATCH" otherwise. err is nil for an
	// answer (a Redis nil reply included), a Redis error reply, or an error matching
	// ErrUnavailable. Calls refused before they were sent (breaker open, cache closed) are
	// not observed: Stats.L2Errors counts them.
	RedisCallDone(command string, d time.Duration, err error)
}

// redisObserve is Observer.RedisCallDone, or nil.
func (o *Options) redisObserve() func(string, time.Duration, error) {
	if o.Observer == nil {
		return nil
	}
	return o.Observer.RedisCallDone
}

// NewFromEnvOptions reads the original design's environment variables into Options:
// REDIS_URL, CACHE_KEY_PREFIX and CACHE_DEFAULT_TIMEOUT (seconds), and REDIS_TLS_CA_FILE (a
// PEM file of the CA that signed the server's certificate, for rediss:// or ?ssl=true).
func NewFromEnvOptions() (Options, error) {
	o := Options{RedisURL: os.Getenv("REDIS_URL"), KeyPrefix: os.Getenv("CACHE_KEY_PREFIX")}
	if s := os.Getenv("CACHE_DEFAULT_TIMEOUT"); s != "" {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return o, fmt.Errorf("%w: CACHE_DEFAULT_TIMEOUT=%q is not a positive number of seconds", ErrInvalidOptions, s)
		}
		o.DefaultTTL = time.Duration(n) * time.Second
	}
	cfg, err := TLSConfigFromEnv()
	if err != nil {
		return o, err
	}
	o.TLSConfig = cfg
	return o, nil
}

// withDefaults returns a copy of o with defaults filled in, or an error for bad values. It
// never changes the caller's Options.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if o.DefaultTTL < 0 {
		bad("DefaultTTL %v is negative", o.DefaultTTL)
	} else if o.DefaultTTL == 0 {
		o.DefaultTTL = DefaultTTL
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"DefaultTTL", o.DefaultTTL}, {"L1TTL", o.L1TTL}, {"FailSafeMaxStale", o.FailSafeMaxStale}, {"LoadLockTTL", o.LoadLockTTL},
		{"Timeout", o.Timeout}, {"BreakerCooldown", o.BreakerCooldown}} {
		if d.v > MaxTTL {
			bad("%s %v is longer than MaxTTL (%v)", d.name, d.v, MaxTTL)
		}
	}
	switch {
	case o.MaxValueBytes < 0:
		bad("MaxValueBytes %d is negative", o.MaxValueBytes)
	case o.MaxValueBytes > MaxValueBytesLimit:
		bad("MaxValueBytes %d is over %d, the most Redis stores in one value", o.MaxValueBytes, MaxValueBytesLimit)
	case o.MaxValueBytes == 0:
		o.MaxValueBytes = DefaultMaxValueBytes
	}
	if o.L1MaxBytes < 0 {
		bad("L1MaxBytes %d is negative", o.L1MaxBytes)
	} else if o.L1MaxBytes == 0 {
		o.L1MaxBytes = DefaultL1MaxBytes
	}
	if o.L1TTL < 0 {
		bad("L1TTL %v is negative", o.L1TTL)
	}
	if o.Timeout < 0 {
		bad("Timeout %v is negative", o.Timeout)
	} else if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.BreakerThreshold < 0 {
		bad("BreakerThreshold %d is negative", o.BreakerThreshold)
	} else if o.BreakerThreshold == 0 {
		o.BreakerThreshold = DefaultBreakerThreshold
	}
	if o.BreakerCooldown < 0 {
		bad("BreakerCooldown %v is negative", o.BreakerCooldown)
	} else if o.BreakerCooldown == 0 {
		o.BreakerCooldown = DefaultBreakerCooldown
	}
	if o.EagerRefresh < 0 || o.EagerRefresh >= 1 {
		bad("EagerRefresh %v is not in [0, 1)", o.EagerRefresh)
	}
	if o.LoadLockTTL < 0 {
		bad("LoadLockTTL %v is negative", o.LoadLockTTL)
	}
	if o.FailSafeMaxStale < 0 {
		bad("FailSafeMaxStale %v is negative", o.FailSafeMaxStale)
	}
	if o.Invalidation < Auto || o.Invalidation > BusOnly {
		bad("unknown Invalidation mode %d", int(o.Invalidation))
	}
	if strings.ContainsAny(o.KeyPrefix, " \r\n\t") {
		bad("KeyPrefix %q contains whitespace", o.KeyPrefix)
	}
	if o.KeyspaceNotifications && o.DisableBus {
		bad("KeyspaceNotifications needs the bus (DisableBus is set)")
	}
	if o.ConfigureKeyspaceNotifications && !o.KeyspaceNotifications {
		bad("ConfigureKeyspaceNotifications without KeyspaceNotifications")
	}
	if o.StartWithoutRedis {
		switch {
		case o.Redis != nil:
			bad("StartWithoutRedis with a client of your own (Options.Redis): it is connected already")
		case o.Invalidation == BusOnly:
			bad("StartWithoutRedis needs Tracking mode (Invalidation is BusOnly)")
		case o.KeyspaceNotifications:
			bad("StartWithoutRedis with KeyspaceNotifications (they must be subscribed to at start)")
		}
	}
	if o.Codec == nil {
		o.Codec = JSON{}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Redis == nil && o.RedisURL == "" {
		o.RedisURL = DefaultRedisURL
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("%w: %w", ErrInvalidOptions, sentinel.Join(errs...))
	}
	return o, nil
}

// ParseRedisURL turns a Redis URL into rueidis options. Beyond rueidis.ParseURL it accepts
// the original design's ?ssl=true as an alias of rediss://, and several comma-separated
// hosts (redis://a:1,b:2). Errors never repeat the password.
func ParseRedisURL(raw string) (rueidis.ClientOption, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL, password included: say less.
		return rueidis.ClientOption{}, fmt.Errorf("%w: RedisURL does not parse as a URL", ErrInvalidOptions)
	}
	switch u.Scheme {
	case "redis", "rediss", "valkey", "valkeys", "unix":
	default:
		return rueidis.ClientOption{}, fmt.Errorf("%w: RedisURL scheme %q: want redis://, rediss:// or unix://", ErrInvalidOptions, u.Scheme)
	}
	q := u.Query()
	if v := q.Get("ssl"); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return rueidis.ClientOption{}, fmt.Errorf("%w: RedisURL ssl=%q is not a boolean", ErrInvalidOptions, v)
		}
		if on && u.Scheme == "redis" {
			u.Scheme = "rediss"
		}
		q.Del("ssl")
	}
	var extra []string
	if hosts := strings.Split(u.Host, ","); len(hosts) > 1 {
		u.Host = hosts[0]
		extra = hosts[1:]
	}
	for _, h := range extra {
		if h = strings.TrimSpace(h); h != "" {
			q.Add("addr", h)
		}
	}
	u.RawQuery = q.Encode()
	opt, err := rueidis.ParseURL(u.String())
	if err != nil {
		return opt, fmt.Errorf("%w: RedisURL %s: %v", ErrInvalidOptions, u.Redacted(), err)
	}
	return opt, nil
}
