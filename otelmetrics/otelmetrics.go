package otelmetrics

import (
	"errors"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ScopeName is the instrumentation scope of every instrument of this package.
const ScopeName = "github.com/synspirit/tiercache/otelmetrics"

// Attribute keys of this package's metrics (see the package doc).
const (
	AttrGroup  = attribute.Key("tiercache.group")
	AttrTier   = attribute.Key("tiercache.tier")
	AttrResult = attribute.Key("tiercache.result")
	AttrSource = attribute.Key("tiercache.invalidation.source")
	AttrState  = attribute.Key("tiercache.state")
	// The semantic conventions' keys, for the Redis call histogram and failures.
	AttrDBSystemName    = attribute.Key("db.system.name")
	AttrDBOperationName = attribute.Key("db.operation.name")
	AttrErrorType       = attribute.Key("error.type")
)

// Option configures a registration or an Observer.
type Option func(*config)

type config struct {
	attrs []attribute.KeyValue
}

// WithAttributes adds attrs to every measurement: to tell apart two caches registered with
// one MeterProvider, for instance.
func WithAttributes(attrs ...attribute.KeyValue) Option {
	return func(c *config) { c.attrs = append(c.attrs, attrs...) }
}

func newConfig(opts []Option) config {
	var c config
	for _, o := range opts {
		o(&c)
	}
	return c
}

// with returns attrs after the configured ones, as one set.
func (c *config) with(attrs ...attribute.KeyValue) attribute.Set {
	all := make([]attribute.KeyValue, 0, len(c.attrs)+len(attrs))
	return attribute.NewSet(append(append(all, c.attrs...), attrs...)...)
}

var errNilMeterProvider = errors.New("otelmetrics: nil MeterProvider")

// Registration is the callbacks of one Register call. Close them when the cache, counters
// or proxy they read is gone.
type Registration struct {
	reg       metric.Registration
	closeOnce sync.Once
	err       error
}

// Close unregisters the callbacks: the instruments they fed report nothing more. It is
// idempotent and returns the first call's error.
func (r *Registration) Close() error {
	r.closeOnce.Do(func() { r.err = r.reg.Unregister() })
	return r.err
}

// counterSpec is one asynchronous counter of a registration.
type counterSpec struct {
	name, unit, desc string
	inst             *metric.Int64ObservableCounter
}

// newCounters makes the asynchronous counters specs describes, in meter m.
func newCounters(m metric.Meter, specs []counterSpec) ([]metric.Observable, error) {
	out := make([]metric.Observable, 0, len(specs))
	for _, s := range specs {
		inst, err := m.Int64ObservableCounter(s.name, metric.WithUnit(s.unit), metric.WithDescription(s.desc))
		if err != nil {
			return nil, fmt.Errorf("otelmetrics: %s: %w", s.name, err)
		}
		*s.inst = inst
		out = append(out, inst)
	}
	return out, nil
}

// register registers f as the callback of instruments.
func register(m metric.Meter, f metric.Callback, instruments []metric.Observable) (*Registration, error) {
	reg, err := m.RegisterCallback(f, instruments...)
	if err != nil {
		return nil, fmt.Errorf("otelmetrics: %w", err)
	}
	return &Registration{reg: reg}, nil
}

// clamp converts a uint64 count to the int64 an instrument observes.
func clamp(n uint64) int64 {
	if n > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(n)
}
