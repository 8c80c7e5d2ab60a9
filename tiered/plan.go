package tiered

import (
	"fmt"
	"time"

	"github.com/redis/rueidis"
)

// plan is what New will do, decided from Options alone: no I/O. New then connects top to
// bottom following it; makePlan is tested without Redis.
type plan struct {
	opts Options // with defaults applied

	// client is the rueidis configuration of the data client (and, with listen, of the
	// tracking listener); zero when the caller brings its own client (opts.Redis).
	client rueidis.ClientOption
	tlsOn  bool // the connection uses TLS (for the plain-to-TLS hint)

	// listen: start a tracking listener. mode is then Auto (fall back to BusOnly if Redis
	// refuses tracking) or Tracking (a refusal fails New); without listen it is BusOnly.
	listen bool
	mode   InvalidationMode

	// offlineOK: New may succeed while Redis does not answer (StartWithoutRedis).
	offlineOK bool
}

func makePlan(opts Options) (plan, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return plan{}, err
	}
	p := plan{opts: o, mode: o.Invalidation, offlineOK: o.StartWithoutRedis}
	if o.Redis != nil {
		switch p.mode {
		case Auto:
			p.mode = BusOnly
		case Tracking:
			return plan{}, fmt.Errorf("%w: Invalidation Tracking with a client of your own (Options.Redis): the cache cannot hear tracking invalidations on a client it did not make; give RedisURL instead (the cache dials its own listener), or use BusOnly", ErrInvalidOptions)
		}
		return p, nil
	}
	opt, err := ParseRedisURL(o.RedisURL)
	if err != nil {
		return plan{}, err
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
	// rueidis's defaults (5 s to dial, 10 s without a reply before a connection is given
	// up) suit a database; a cache should notice a dead server sooner. The per-call deadline
	// bounds each call either way; these bound how long a broken connection lives.
	if opt.Dialer.Timeout == 0 {
		opt.Dialer.Timeout = max(10*o.Timeout, time.Second)
	}
	if opt.ConnWriteTimeout == 0 {
		opt.ConnWriteTimeout = max(10*o.Timeout, time.Second)
	}
	p.tlsOn = opt.TLSConfig != nil
	noTracking := opt.AlwaysRESP2 || opt.DisableCache
	if o.StartWithoutRedis {
		switch {
		case len(opt.InitAddress) != 1 || opt.Sentinel.MasterSet != "":
			return plan{}, fmt.Errorf("%w: StartWithoutRedis needs RedisURL to name one standalone server", ErrInvalidOptions)
		case noTracking:
			return plan{}, fmt.Errorf("%w: StartWithoutRedis needs RESP3 and tracking (the URL asks for RESP2 or no client cache)", ErrInvalidOptions)
		}
	}
	if noTracking {
		if p.mode == Tracking {
			return plan{}, fmt.Errorf("%w: Invalidation is Tracking but the URL asks for RESP2 or no client cache", ErrInvalidOptions)
		}
		p.mode = BusOnly
	}
	p.listen = p.mode != BusOnly
	opt.DisableCache = true // the data client; the listener turns it back on
	p.client = opt
	return p, nil
}

// l1TTLCap is the cap on an L1 entry's life in mode m.
func (p plan) l1TTLCap(m InvalidationMode) time.Duration {
	if m == BusOnly && p.opts.L1TTL == 0 {
		return DefaultBusOnlyL1TTL
	}
	return p.opts.L1TTL
}
