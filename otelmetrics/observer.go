package otelmetrics

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/synspirit/tiercache/tiered"
)

// Bucket boundaries, in seconds. Redis calls take from tens of microseconds to the cache's
// Timeout (100 ms by default), finer than the semantic conventions' default advice, which
// starts at 1 ms; loads are database queries and remote calls.
var (
	RedisBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}
	LoadBuckets  = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
)

// Observer records the durations of a cache's loads and Redis calls in two histograms,
// tiercache.load.duration and db.client.operation.duration: give it to the cache as
// tiered.Options.Observer. It is safe for concurrent use; each observation costs one
// histogram record (a few hundred nanoseconds), once per load or Redis call, never on an
// L1 hit.
type Observer struct {
	cfg   config
	loads metric.Float64Histogram
	redis metric.Float64Histogram
	// Attribute sets of successful observations, made once per group or command name: the
	// names are few (the groups, the commands tiercache sends).
	loadSets  sync.Map // group name → metric.RecordOption
	redisSets sync.Map // command name → metric.RecordOption
}

var _ tiered.Observer = (*Observer)(nil)

// NewObserver returns an Observer recording into mp's meter of this package.
func NewObserver(mp metric.MeterProvider, opts ...Option) (*Observer, error) {
	if mp == nil {
		return nil, errNilMeterProvider
	}
	m := mp.Meter(ScopeName)
	o := &Observer{cfg: newConfig(opts)}
	var err error
	o.loads, err = m.Float64Histogram("tiercache.load.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of loader calls, by group."),
		metric.WithExplicitBucketBoundaries(LoadBuckets...))
	if err != nil {
		return nil, err
	}
	o.redis, err = m.Float64Histogram("db.client.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of database client operations."),
		metric.WithExplicitBucketBoundaries(RedisBuckets...))
	if err != nil {
		return nil, err
	}
	return o, nil
}

// LoadDone records a loader call of group (tiered.Observer).
func (o *Observer) LoadDone(group string, d time.Duration, err error) {
	if err != nil && !errors.Is(err, tiered.ErrNotFound) {
		o.loads.Record(context.Background(), d.Seconds(), metric.WithAttributeSet(
			o.cfg.with(AttrGroup.String(group), AttrErrorType.String(errorType(err)))))
		return
	}
	o.loads.Record(context.Background(), d.Seconds(), cached(&o.loadSets, group, func() attribute.Set {
		return o.cfg.with(AttrGroup.String(group))
	}))
}

// RedisCallDone records a Redis call (tiered.Observer).
func (o *Observer) RedisCallDone(command string, d time.Duration, err error) {
	if err != nil {
		o.redis.Record(context.Background(), d.Seconds(), metric.WithAttributeSet(o.cfg.with(
			AttrDBSystemName.String("redis"), AttrDBOperationName.String(command), AttrErrorType.String(errorType(err)))))
		return
	}
	o.redis.Record(context.Background(), d.Seconds(), cached(&o.redisSets, command, func() attribute.Set {
		return o.cfg.with(AttrDBSystemName.String("redis"), AttrDBOperationName.String(command))
	}))
}

// cached returns the record option of name in m, making it with set on first use.
func cached(m *sync.Map, name string, set func() attribute.Set) metric.RecordOption {
	if v, ok := m.Load(name); ok {
		return v.(metric.RecordOption)
	}
	v, _ := m.LoadOrStore(name, metric.WithAttributeSet(set()))
	return v.(metric.RecordOption)
}

// errorType is the error.type of err (see the package doc).
func errorType(err error) string {
	var pe *tiered.PanicError
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	case errors.Is(err, tiered.ErrClosed):
		return "closed"
	case errors.Is(err, tiered.ErrUnavailable):
		return "unavailable"
	case errors.As(err, &pe):
		return "panic"
	}
	if re, ok := rueidis.IsRedisErr(err); ok {
		if code, _, _ := strings.Cut(re.Error(), " "); code != "" {
			return code
		}
	}
	return "_OTHER"
}
