package otelmetrics_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/synspirit/tiercache/counter"
	"github.com/synspirit/tiercache/image"
	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/otelmetrics"
	"github.com/synspirit/tiercache/tiered"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// meter is a MeterProvider read by hand.
type meter struct {
	t      *testing.T
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newMeter(t *testing.T) *meter {
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { require.NoError(t, mp.Shutdown(context.Background())) })
	return &meter{t: t, reader: r, mp: mp}
}

// collect returns the metrics of this package's scope, by name.
func (m *meter) collect() map[string]metricdata.Metrics {
	m.t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(m.t, m.reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otelmetrics.ScopeName {
			continue
		}
		for _, md := range sm.Metrics {
			out[md.Name] = md
		}
	}
	return out
}

// sum is the value of the counter or gauge name for the data point with exactly attrs.
func (m *meter) sum(name string, attrs ...attribute.KeyValue) int64 {
	m.t.Helper()
	md, ok := m.collect()[name]
	require.True(m.t, ok, "no metric %s", name)
	want := attribute.NewSet(attrs...)
	var points []metricdata.DataPoint[int64]
	switch d := md.Data.(type) {
	case metricdata.Sum[int64]:
		points = d.DataPoints
	case metricdata.Gauge[int64]:
		points = d.DataPoints
	default:
		m.t.Fatalf("%s is a %T", name, md.Data)
	}
	for _, p := range points {
		if p.Attributes.Equals(&want) {
			return p.Value
		}
	}
	m.t.Fatalf("%s has no point %v", name, attrs)
	return 0
}

// count is the number of observations of histogram name with exactly attrs (0 if none).
func (m *meter) count(name string, attrs ...attribute.KeyValue) uint64 {
	m.t.Helper()
	md, ok := m.collect()[name]
	if !ok {
		return 0
	}
	h, ok := md.Data.(metricdata.Histogram[float64])
	require.True(m.t, ok, "%s is a %T", name, md.Data)
	want := attribute.NewSet(attrs...)
	for _, p := range h.DataPoints {
		if p.Attributes.Equals(&want) {
			return p.Count
		}
	}
	return 0
}

// countWith is the number of observations of histogram name with attribute kv among others.
func (m *meter) countWith(name string, kv attribute.KeyValue) uint64 {
	m.t.Helper()
	h, _ := m.collect()[name].Data.(metricdata.Histogram[float64])
	var n uint64
	for _, p := range h.DataPoints {
		if v, ok := p.Attributes.Value(kv.Key); ok && v == kv.Value {
			n += p.Count
		}
	}
	return n
}

// moves checks that fn moves the counter name at attrs up.
func (m *meter) moves(what, name string, fn func(), attrs ...attribute.KeyValue) {
	m.t.Helper()
	before := m.sum(name, attrs...)
	fn()
	require.Greater(m.t, m.sum(name, attrs...), before, "%s: %s %v did not move", what, name, attrs)
}

// histMoves checks that fn adds observations to histogram name at attrs.
func (m *meter) histMoves(what, name string, fn func(), attrs ...attribute.KeyValue) {
	m.t.Helper()
	before := m.count(name, attrs...)
	fn()
	require.Greater(m.t, m.count(name, attrs...), before, "%s: %s %v did not move", what, name, attrs)
}

var (
	group  = otelmetrics.AttrGroup
	tier   = otelmetrics.AttrTier
	result = otelmetrics.AttrResult
	redis  = otelmetrics.AttrDBSystemName.String("redis")
	opName = otelmetrics.AttrDBOperationName
)

func TestCacheMetrics(t *testing.T) {
	s := redistest.Start(t)
	m := newMeter(t)
	ctx := context.Background()
	obs, err := otelmetrics.NewObserver(m.mp)
	require.NoError(t, err)
	c, err := tiered.New(ctx, tiered.Options{
		RedisURL: s.URL(), KeyPrefix: "om:", ExactL1Stats: true, Observer: obs,
		BreakerThreshold: 1, BreakerCooldown: time.Hour,
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, c.Close()) }()
	reg, err := otelmetrics.Register(c, m.mp)
	require.NoError(t, err)
	defer func() { require.NoError(t, reg.Close()) }()

	g := tiered.NewGroup[string](c, "articles", time.Minute)
	remote := tiered.NewGroup[string](c, "remote", time.Minute, tiered.WithoutL1())
	load := func(context.Context) (string, error) { return "v", nil }
	ga := group.String("articles")

	// Every metric is there from the first collection.
	names := []string{
		"tiercache.requests", "tiercache.loads", "tiercache.load.errors", "tiercache.loads.shared", "tiercache.loads.yielded",
		"tiercache.redis.errors", "tiercache.invalidations", "tiercache.l1.flushes", "tiercache.breaker.state",
		"tiercache.breaker.opens", "tiercache.fail_safe.answers", "tiercache.bus.publish.errors",
	}
	got := m.collect()
	for _, n := range names {
		require.Contains(t, got, n)
	}
	require.Equal(t, int64(1), m.sum("tiercache.breaker.state", otelmetrics.AttrState.String("closed")))
	require.Equal(t, int64(0), m.sum("tiercache.breaker.state", otelmetrics.AttrState.String("open")))

	// The group's prefix tracked (a value read is then kept in L1): its reads ask the TTL
	// beside the value, in one pipeline (BATCH).
	require.NoError(t, g.Set(ctx, "arming", "v"))
	require.Eventually(t, func() bool {
		before := m.sum("tiercache.requests", ga, tier.String("l1"), result.String("hit"))
		_, err := g.Get(ctx, "arming")
		require.NoError(t, err)
		_, err = g.Get(ctx, "arming")
		require.NoError(t, err)
		return m.sum("tiercache.requests", ga, tier.String("l1"), result.String("hit")) > before
	}, 5*time.Second, time.Millisecond, "the group's values reach L1")

	// A load: an L1 miss, an L2 miss, a loader call timed, Redis calls timed.
	m.moves("a load", "tiercache.loads", func() {
		m.histMoves("a load", "tiercache.load.duration", func() {
			m.histMoves("a load's Redis read", "db.client.operation.duration", func() {
				m.histMoves("a load's Redis write", "db.client.operation.duration", func() {
					_, err := g.GetOrLoad(ctx, "k", load)
					require.NoError(t, err)
				}, redis, opName.String("SET"))
			}, redis, opName.String("BATCH"))
		}, ga)
	}, ga)
	require.Positive(t, m.sum("tiercache.requests", ga, tier.String("l1"), result.String("miss")))
	require.Positive(t, m.sum("tiercache.requests", ga, tier.String("l2"), result.String("miss")))

	// An L1 hit moves the group's L1 hit counter.
	require.Eventually(t, func() bool {
		before := m.sum("tiercache.requests", ga, tier.String("l1"), result.String("hit"))
		_, err := g.Get(ctx, "k")
		require.NoError(t, err)
		return m.sum("tiercache.requests", ga, tier.String("l1"), result.String("hit")) == before+1
	}, time.Second, time.Millisecond, "an L1 hit")

	// An L2 hit, in a group without L1.
	require.NoError(t, remote.Set(ctx, "r", "v"))
	m.moves("an L2 hit", "tiercache.requests", func() {
		_, err := remote.Get(ctx, "r")
		require.NoError(t, err)
	}, group.String("remote"), tier.String("l2"), result.String("hit"))

	// A failed load, timed with its error.type.
	m.moves("a failed load", "tiercache.load.errors", func() {
		m.histMoves("a failed load", "tiercache.load.duration", func() {
			_, err := g.GetOrLoad(ctx, "bad", func(context.Context) (string, error) { return "", errors.New("db down") })
			require.Error(t, err)
		}, ga, otelmetrics.AttrErrorType.String("_OTHER"))
	}, ga)

	// A write invalidates locally; a flush is counted.
	m.moves("a write", "tiercache.invalidations", func() {
		require.NoError(t, g.Set(ctx, "k", "w"))
	}, otelmetrics.AttrSource.String("local"))
	m.moves("a flush", "tiercache.l1.flushes", func() { require.NoError(t, c.Flush(ctx)) })

	// A Redis error reply is timed with its code; counters built on the cache are timed too.
	m.histMoves("a WRONGTYPE reply", "db.client.operation.duration", func() {
		require.NoError(t, s.Do("RPUSH", "om:count:article:1:likes", "x").Error())
		_, err := counter.FromCache(c, counter.Options{}).Get(ctx, counter.Key{Target: "article", ID: "1", Counter: "likes"}, 0)
		require.Error(t, err)
	}, redis, opName.String("GET"), otelmetrics.AttrErrorType.String("WRONGTYPE"))

	// A read of a group's value that fails.
	wrong, err := remote.RedisKey(ctx, "wrong")
	require.NoError(t, err)
	require.NoError(t, s.Do("RPUSH", wrong, "x").Error())
	m.moves("a failed read", "tiercache.redis.errors", func() {
		m.moves("a failed read", "tiercache.requests", func() {
			_, err := remote.Get(ctx, "wrong")
			require.Error(t, err)
		}, group.String("remote"), tier.String("l2"), result.String("error"))
	})

	// Redis down: failed calls, timed as unavailable, until the breaker opens.
	s.Stop()
	unavailable := otelmetrics.AttrErrorType.String("unavailable")
	timed, opens := m.countWith("db.client.operation.duration", unavailable), m.sum("tiercache.breaker.opens")
	require.Eventually(t, func() bool {
		_, err := remote.Get(ctx, "r")
		require.ErrorIs(t, err, tiered.ErrUnavailable)
		return c.Stats().Breaker == tiered.BreakerOpen
	}, 5*time.Second, 5*time.Millisecond, "the breaker never opened")
	require.Greater(t, m.countWith("db.client.operation.duration", unavailable), timed, "calls timed as unavailable")
	require.Greater(t, m.sum("tiercache.breaker.opens"), opens)
	require.Equal(t, int64(1), m.sum("tiercache.breaker.state", otelmetrics.AttrState.String("open")))
	require.Equal(t, int64(0), m.sum("tiercache.breaker.state", otelmetrics.AttrState.String("closed")))

	// After Close, the cache's counters are reported no more.
	require.NoError(t, reg.Close())
	md := m.collect()["tiercache.requests"]
	if sum, ok := md.Data.(metricdata.Sum[int64]); ok {
		require.Empty(t, sum.DataPoints)
	}
}

func TestCountersAndProxyMetrics(t *testing.T) {
	s := redistest.Start(t)
	m := newMeter(t)
	ctx := context.Background()
	c, err := tiered.New(ctx, tiered.Options{RedisURL: s.URL(), KeyPrefix: "om:"})
	require.NoError(t, err)
	defer func() { require.NoError(t, c.Close()) }()

	cnt := counter.FromCache(c, counter.Options{})
	creg, err := otelmetrics.RegisterCounters(cnt, m.mp, otelmetrics.WithAttributes(attribute.String("service", "t")))
	require.NoError(t, err)
	defer func() { require.NoError(t, creg.Close()) }()
	svc := attribute.String("service", "t")
	likes := counter.Key{Target: "article", ID: "1", Counter: "likes"}
	m.moves("an increment", "tiercache.counter.writes", func() {
		_, err := cnt.Increment(ctx, likes, 1)
		require.NoError(t, err)
	}, svc)
	m.moves("a read", "tiercache.counter.reads", func() {
		_, err := cnt.Get(ctx, likes, 0)
		require.NoError(t, err)
	}, svc, result.String("hit"))
	m.moves("a miss", "tiercache.counter.reads", func() {
		_, err := cnt.Get(ctx, counter.Key{Target: "article", ID: "2", Counter: "likes"}, 0)
		require.NoError(t, err)
	}, svc, result.String("miss"))
	other := counter.Key{Target: "article", ID: "3", Counter: "likes"}
	m.moves("a load", "tiercache.counter.loads", func() {
		m.moves("a failed load", "tiercache.counter.load.errors", func() {
			_, err := cnt.GetOrLoad(ctx, other, func(context.Context) (int64, error) { return 0, errors.New("db down") })
			require.Error(t, err)
		}, svc)
	}, svc)
	require.NoError(t, s.Do("SET", "om:count:article:4:likes", "x").Error())
	m.moves("a value not a counter", "tiercache.counter.errors", func() {
		_, err := cnt.Get(ctx, counter.Key{Target: "article", ID: "4", Counter: "likes"}, 0)
		require.Error(t, err)
	}, svc)

	imgs := image.New(c, image.Options{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "gone", http.StatusNotFound)
	}))
	defer origin.Close()
	u, err := url.Parse(origin.URL)
	require.NoError(t, err)
	p := image.NewProxy(imgs, image.ProxyOptions{AllowedHosts: []string{u.Host}, AllowPrivateNetworks: true})
	defer func() { require.NoError(t, p.Close()) }()
	preg, err := otelmetrics.RegisterProxy(p, m.mp)
	require.NoError(t, err)
	defer func() { require.NoError(t, preg.Close()) }()
	get := func(target string) int {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/img?url="+url.QueryEscape(target), nil))
		return rec.Code
	}
	m.moves("a request", "tiercache.image_proxy.requests", func() {
		m.moves("a refusal", "tiercache.image_proxy.refusals", func() {
			require.Equal(t, http.StatusForbidden, get("http://elsewhere.example/a.png"))
		})
	})
	m.moves("a fetch", "tiercache.image_proxy.fetches", func() {
		m.moves("a failed fetch", "tiercache.image_proxy.fetch.errors", func() {
			require.Equal(t, http.StatusBadGateway, get(origin.URL+"/a.png"))
		})
	})
	require.NoError(t, imgs.Set(ctx, origin.URL+"/set.png", pngHeader(), "image/png", 0))
	m.moves("a cached image", "tiercache.image_proxy.hits", func() {
		require.Equal(t, http.StatusOK, get(origin.URL+"/set.png"))
	})
}

// pngHeader is the smallest byte string the proxy takes for a PNG.
func pngHeader() []byte {
	return append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), make([]byte, 64)...)
}

func TestNilArguments(t *testing.T) {
	m := newMeter(t)
	_, err := otelmetrics.Register(nil, m.mp)
	require.Error(t, err)
	_, err = otelmetrics.NewObserver(nil)
	require.Error(t, err)
	_, err = otelmetrics.RegisterCounters(nil, m.mp)
	require.Error(t, err)
	_, err = otelmetrics.RegisterProxy(nil, m.mp)
	require.Error(t, err)
}
