package otelmetrics

import (
	"context"
	"errors"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/synspirit/tiercache/tiered"
)

var errNilCache = errors.New("otelmetrics: nil *tiered.Cache")

// Register makes c's counters observable in mp: each collection reads c.Stats and
// c.GroupStats once (a few microseconds, no Redis call). The durations come from an
// [Observer] given to the cache at New. Close the Registration before or when c closes.
func Register(c *tiered.Cache, mp metric.MeterProvider, opts ...Option) (*Registration, error) {
	if c == nil {
		return nil, errNilCache
	}
	if mp == nil {
		return nil, errNilMeterProvider
	}
	cfg := newConfig(opts)
	m := mp.Meter(ScopeName)
	var (
		requests, loads, loadErrors, shared, redisErrors, invalidations metric.Int64ObservableCounter
		flushes, opens, failSafe, publishErrors, yielded                metric.Int64ObservableCounter
	)
	instruments, err := newCounters(m, []counterSpec{
		{"tiercache.requests", "{request}", "Lookups of a group's keys, by tier and result.", &requests},
		{"tiercache.loads", "{load}", "Loader calls, by group.", &loads},
		{"tiercache.load.errors", "{load}", "Loader calls that returned an error or panicked, by group.", &loadErrors},
		{"tiercache.loads.shared", "{request}", "GetOrLoad calls that joined another caller's load.", &shared},
		{"tiercache.loads.yielded", "{load}", "Loaded values not stored because their key was written while the loader ran.", &yielded},
		{"tiercache.redis.errors", "{error}", "Redis calls that failed, breaker rejections included.", &redisErrors},
		{"tiercache.invalidations", "{key}", "Keys invalidated in L1, by where the invalidation came from.", &invalidations},
		{"tiercache.l1.flushes", "{flush}", "Whole-L1 invalidations: a lost connection, FLUSHALL, the breaker, Flush.", &flushes},
		{"tiercache.breaker.opens", "{open}", "Times the circuit breaker in front of Redis opened.", &opens},
		{"tiercache.fail_safe.answers", "{answer}", "Stale values served because the loader (and perhaps Redis) failed.", &failSafe},
		{"tiercache.bus.publish.errors", "{message}", "Invalidation bus messages that could not be sent.", &publishErrors},
	})
	if err != nil {
		return nil, err
	}
	breaker, err := m.Int64ObservableGauge("tiercache.breaker.state", metric.WithUnit("{state}"),
		metric.WithDescription("1 for the circuit breaker's current state, 0 for the others."))
	if err != nil {
		return nil, err
	}
	instruments = append(instruments, breaker)

	// Attribute sets that do not depend on a group, made once.
	sets := func(key attribute.Key, values ...string) []metric.ObserveOption {
		out := make([]metric.ObserveOption, len(values))
		for i, v := range values {
			out[i] = metric.WithAttributeSet(cfg.with(key.String(v)))
		}
		return out
	}
	plain := metric.WithAttributeSet(cfg.with())
	sources := sets(AttrSource, "local", "tracking", "bus", "keyspace")
	states := sets(AttrState, tiered.BreakerClosed.String(), tiered.BreakerOpen.String(), tiered.BreakerHalfOpen.String())
	stateValues := []tiered.BreakerState{tiered.BreakerClosed, tiered.BreakerOpen, tiered.BreakerHalfOpen}
	var mu sync.Mutex                 // protects groups: two readers may collect at once
	groups := map[string]*groupSets{} // by group name

	return register(m, func(_ context.Context, o metric.Observer) error {
		mu.Lock()
		defer mu.Unlock()
		st := c.Stats()
		for name, gs := range c.GroupStats() {
			g := groups[name]
			if g == nil {
				g = newGroupSets(&cfg, name)
				groups[name] = g
			}
			o.ObserveInt64(requests, clamp(gs.L1Hits), g.l1Hit)
			o.ObserveInt64(requests, clamp(gs.L1Misses), g.l1Miss)
			o.ObserveInt64(requests, clamp(gs.L2Hits), g.l2Hit)
			o.ObserveInt64(requests, clamp(gs.L2Misses), g.l2Miss)
			o.ObserveInt64(requests, clamp(gs.L2Errors), g.l2Error)
			o.ObserveInt64(loads, clamp(gs.Loads), g.group)
			o.ObserveInt64(loadErrors, clamp(gs.LoadErrors), g.group)
		}
		o.ObserveInt64(shared, clamp(st.LoadsShared), plain)
		o.ObserveInt64(yielded, clamp(st.LoadsYielded), plain)
		o.ObserveInt64(redisErrors, clamp(st.L2Errors), plain)
		inv := st.Invalidations
		for i, n := range []uint64{inv.Local, inv.Tracking, inv.Bus, inv.Keyspace} {
			o.ObserveInt64(invalidations, clamp(n), sources[i])
		}
		o.ObserveInt64(flushes, clamp(st.Flushes), plain)
		o.ObserveInt64(opens, clamp(st.BreakerOpens), plain)
		o.ObserveInt64(failSafe, clamp(st.FailSafeServed), plain)
		o.ObserveInt64(publishErrors, clamp(st.PublishErrors), plain)
		for i, s := range stateValues {
			v := int64(0)
			if st.Breaker == s {
				v = 1
			}
			o.ObserveInt64(breaker, v, states[i])
		}
		return nil
	}, instruments)
}

// groupSets are the attribute sets of one group's measurements.
type groupSets struct {
	group                                 metric.ObserveOption
	l1Hit, l1Miss, l2Hit, l2Miss, l2Error metric.ObserveOption
}

func newGroupSets(cfg *config, name string) *groupSets {
	g := AttrGroup.String(name)
	req := func(tier, result string) metric.ObserveOption {
		return metric.WithAttributeSet(cfg.with(g, AttrTier.String(tier), AttrResult.String(result)))
	}
	return &groupSets{
		group: metric.WithAttributeSet(cfg.with(g)),
		l1Hit: req("l1", "hit"), l1Miss: req("l1", "miss"),
		l2Hit: req("l2", "hit"), l2Miss: req("l2", "miss"), l2Error: req("l2", "error"),
	}
}
