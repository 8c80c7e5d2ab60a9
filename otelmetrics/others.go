package otelmetrics

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/metric"

	"github.com/synspirit/tiercache/counter"
	"github.com/synspirit/tiercache/image"
)

var (
	errNilCounters = errors.New("otelmetrics: nil *counter.Counters")
	errNilProxy    = errors.New("otelmetrics: nil *image.Proxy")
)

// RegisterCounters makes cnt's counters observable in mp (the tiercache.counter.* metrics):
// each collection reads cnt.Stats. Their Redis calls are in db.client.operation.duration when
// cnt is built on a cache made with an [Observer].
func RegisterCounters(cnt *counter.Counters, mp metric.MeterProvider, opts ...Option) (*Registration, error) {
	if cnt == nil {
		return nil, errNilCounters
	}
	if mp == nil {
		return nil, errNilMeterProvider
	}
	cfg := newConfig(opts)
	m := mp.Meter(ScopeName)
	var reads, writes, loads, loadErrors, failures metric.Int64ObservableCounter
	instruments, err := newCounters(m, []counterSpec{
		{"tiercache.counter.reads", "{counter}", "Counters read, by result (hit: found, miss: not found).", &reads},
		{"tiercache.counter.writes", "{counter}", "Counters written: increments, decrements, sets and deletes.", &writes},
		{"tiercache.counter.loads", "{load}", "GetOrLoad's loader calls.", &loads},
		{"tiercache.counter.load.errors", "{load}", "Loader calls that returned an error.", &loadErrors},
		{"tiercache.counter.errors", "{error}", "Calls that failed: Redis unreachable or answering an error, a value not a counter.", &failures},
	})
	if err != nil {
		return nil, err
	}
	plain := metric.WithAttributeSet(cfg.with())
	hit := metric.WithAttributeSet(cfg.with(AttrResult.String("hit")))
	miss := metric.WithAttributeSet(cfg.with(AttrResult.String("miss")))
	return register(m, func(_ context.Context, o metric.Observer) error {
		st := cnt.Stats()
		o.ObserveInt64(reads, clamp(st.Reads-min(st.Misses, st.Reads)), hit)
		o.ObserveInt64(reads, clamp(st.Misses), miss)
		o.ObserveInt64(writes, clamp(st.Writes), plain)
		o.ObserveInt64(loads, clamp(st.Loads), plain)
		o.ObserveInt64(loadErrors, clamp(st.LoadErrors), plain)
		o.ObserveInt64(failures, clamp(st.Errors), plain)
		return nil
	}, instruments)
}

// RegisterProxy makes p's counters observable in mp (the tiercache.image_proxy.* metrics):
// each collection reads p.Stats. The image cache behind it is a group of its tiered.Cache,
// in that cache's metrics ([Register]).
func RegisterProxy(p *image.Proxy, mp metric.MeterProvider, opts ...Option) (*Registration, error) {
	if p == nil {
		return nil, errNilProxy
	}
	if mp == nil {
		return nil, errNilMeterProvider
	}
	cfg := newConfig(opts)
	m := mp.Meter(ScopeName)
	var requests, hits, fetches, fetchErrors, refusals metric.Int64ObservableCounter
	instruments, err := newCounters(m, []counterSpec{
		{"tiercache.image_proxy.requests", "{request}", "Requests to the image proxy.", &requests},
		{"tiercache.image_proxy.hits", "{request}", "Images served from the cache.", &hits},
		{"tiercache.image_proxy.fetches", "{fetch}", "Origin fetches.", &fetches},
		{"tiercache.image_proxy.fetch.errors", "{fetch}", "Origin fetches that failed.", &fetchErrors},
		{"tiercache.image_proxy.refusals", "{request}", "Image URLs the guard refused: host not allowed, private address.", &refusals},
	})
	if err != nil {
		return nil, err
	}
	plain := metric.WithAttributeSet(cfg.with())
	return register(m, func(_ context.Context, o metric.Observer) error {
		st := p.Stats()
		o.ObserveInt64(requests, clamp(st.Requests), plain)
		o.ObserveInt64(hits, clamp(st.Hits), plain)
		o.ObserveInt64(fetches, clamp(st.Fetches), plain)
		o.ObserveInt64(fetchErrors, clamp(st.FetchErrors), plain)
		o.ObserveInt64(refusals, clamp(st.Refused), plain)
		return nil
	}, instruments)
}
