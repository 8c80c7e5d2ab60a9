// Command webapp is the original site's cache use as a Go net/http service on a real
// database: articles, users and likes in SQLite (modernc.org/sqlite, pure Go), read through
// tiercache, with the like counters in Redis atomics and an image proxy.
//
// Run it from the repository root, against a Redis of yours:
//
//	REDIS_URL=redis://127.0.0.1:6379/0 go run ./examples/webapp -db site.db
//	curl -s 'localhost:8080/api/articles?page=1&per_page=5'
//	curl -s localhost:8080/api/articles/7
//	curl -s -X PUT -d '{"title":"Edited"}' localhost:8080/api/articles/7
//	curl -s -X POST localhost:8080/api/articles/7/like
//	curl -s localhost:8080/api/cache-stats
//
// Without a Redis, try it on the demo's in-process Redis-protocol server (bus-only, for
// trying only): the first instance started with -embedded-redis serves it, the others use it.
//
//	go run ./examples/webapp -db site.db -embedded-redis 127.0.0.1:6390
//	go run ./examples/webapp -db site.db -embedded-redis 127.0.0.1:6390 -addr 127.0.0.1:8081
//
// Start a second instance on the same -db file and Redis with another -addr to see the two
// stay coherent: a write through one is seen through the other, likes add up. The tables are
// created and seeded (50 articles, 10 users, likes) only when empty, so instances sharing a
// file seed it once.
//
// Endpoints:
//
//	GET  /api/articles?page=&per_page=   a page of articles with their authors (data:articles:list, 5 min)
//	POST /api/articles                   {"title","body","author_id"}: create; clears the list groups
//	GET  /api/articles/{id}              an article (group data:article, 5 min) and its like count
//	PUT  /api/articles/{id}              {"title"?,"body"?}: update; invalidates the tag article:<id>
//	POST /api/articles/{id}/like         [{"user_id"}]: a like; counter count:article:<id>:likes
//	GET  /api/users/{id}                 a user's profile (group user:profile, 10 min)
//	GET  /proxy/image?url=               the image proxy, for hosts listed in -image-hosts
//	GET  /api/cache-stats                the cache's counters and Redis INFO
//	GET  /metrics                        the cache's, likes' and proxy's metrics (OpenTelemetry, Prometheus format)
//	GET  /debug/db-queries               statements run against the database so far
//	GET  /healthz                        200 once serving
//
// Configuration: the original environment variables REDIS_URL, CACHE_KEY_PREFIX and
// CACHE_DEFAULT_TIMEOUT (seconds), each overridden by its flag (-redis-url, -key-prefix,
// -default-ttl) when given. See -help for the rest. Logs are zap JSON on stderr (-dev: human
// readable, debug level). SIGINT or SIGTERM shut it down gracefully: requests in flight
// finish, then the cache closes, and the exit status is 0.
//
// When Redis goes down the service keeps answering from the database: GetOrLoad falls back
// to the loaders and like counts are counted in the likes table. Redis must be reachable at
// start-up.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.uber.org/zap"

	"github.com/synspirit/tiercache/counter"
	"github.com/synspirit/tiercache/examples/internal/devredis"
	"github.com/synspirit/tiercache/image"
	"github.com/synspirit/tiercache/otelmetrics"
	"github.com/synspirit/tiercache/tiered"
)

const (
	defaultKeyPrefix = "synspirit:" // when neither CACHE_KEY_PREFIX nor -key-prefix is given
	startTimeout     = 10 * time.Second
	shutdownTimeout  = 10 * time.Second
	embeddedTimeout  = time.Second // -redis-timeout's default with -embedded-redis
)

type config struct {
	addr              string
	dbPath            string
	cache             tiered.Options
	imageHosts        []string
	imageAllowPrivate bool
	dev               bool
	embeddedRedis     string // -embedded-redis: the in-process server's address
}

func main() {
	cfg, err := parseConfig(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0) // -help: the usage is printed, as asked
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "webapp:", err)
		os.Exit(2)
	}
	log, err := newLogger(cfg.dev)
	if err != nil {
		fmt.Fprintln(os.Stderr, "webapp: logger:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, log)
	stop()
	if err != nil {
		log.Error("webapp failed", zap.Error(err))
	}
	_ = log.Sync()
	if err != nil {
		os.Exit(1)
	}
}

// parseConfig reads the environment, then the flags, which win when given.
func parseConfig(args []string) (config, error) {
	fs := flag.NewFlagSet("webapp", flag.ContinueOnError)
	var cfg config
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "listen address (host:port; port 0 picks a free one)")
	fs.StringVar(&cfg.dbPath, "db", ":memory:", "SQLite database file, shared by the instances that name it; :memory: for a private one")
	redisURL := fs.String("redis-url", "", "Redis URL (default $REDIS_URL, else "+tiered.DefaultRedisURL+")")
	keyPrefix := fs.String("key-prefix", "", "prefix of every Redis key (default $CACHE_KEY_PREFIX, else "+defaultKeyPrefix+")")
	defaultTTL := fs.Duration("default-ttl", 0, "TTL of cache entries without their own (default $CACHE_DEFAULT_TIMEOUT seconds, else 5m)")
	fs.DurationVar(&cfg.cache.Timeout, "redis-timeout", tiered.DefaultTimeout, "deadline of each Redis call, cache and counters (1s with -embedded-redis unless given)")
	imageHosts := fs.String("image-hosts", "", "comma-separated hosts the image proxy may fetch from, each host or host:port (without a port: 80 and 443; *.example.com for subdomains); empty denies all")
	fs.BoolVar(&cfg.imageAllowPrivate, "image-allow-private", false, "let the image proxy connect to loopback and private addresses (origins on your own network, tests)")
	fs.BoolVar(&cfg.dev, "dev", false, "human-readable debug logs instead of JSON")
	fs.StringVar(&cfg.embeddedRedis, "embedded-redis", "", "run on the demo's in-process Redis-protocol server at this loopback host:port, started here unless another instance already serves it (bus-only; no redis-server needed; for trying, not production)")
	startWithoutRedis := fs.Bool("start-without-redis", false, "start even if Redis (standalone) does not answer yet; the cache connects when it does")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	opts, err := tiered.NewFromEnvOptions()
	if err != nil {
		return cfg, err
	}
	opts.Timeout = cfg.cache.Timeout
	if cfg.embeddedRedis != "" && opts.Timeout == tiered.DefaultTimeout {
		// The in-process server runs every command and counter script on one lock of one
		// process: on a busy machine a call can take longer than the default 100 ms.
		opts.Timeout = embeddedTimeout
	}
	if _, ok := os.LookupEnv("CACHE_KEY_PREFIX"); !ok {
		opts.KeyPrefix = defaultKeyPrefix
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "redis-url":
			opts.RedisURL = *redisURL
		case "key-prefix":
			opts.KeyPrefix = *keyPrefix
		case "default-ttl":
			opts.DefaultTTL = *defaultTTL
		}
	})
	opts.StartWithoutRedis = *startWithoutRedis
	cfg.cache = opts
	for _, h := range strings.Split(*imageHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.imageHosts = append(cfg.imageHosts, h)
		}
	}
	return cfg, nil
}

func newLogger(dev bool) (*zap.Logger, error) {
	if dev {
		return zap.NewDevelopment()
	}
	return zap.NewProduction()
}

// run serves until ctx ends, then shuts down: the HTTP server first (requests in flight
// finish), then what they use.
func run(ctx context.Context, cfg config, log *zap.Logger) error {
	db, err := openStore(cfg.dbPath)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer db.Close()
	startCtx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	seeded, err := db.migrate(startCtx)
	if err != nil {
		return fmt.Errorf("database %s: %w", cfg.dbPath, err)
	}
	log.Info("database ready", zap.String("db", cfg.dbPath), zap.Bool("seeded", seeded))

	cacheOpts := cfg.cache
	cacheOpts.Logger = log
	m, err := newMetrics()
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer m.close()
	cacheOpts.Observer = m.observer
	if cfg.embeddedRedis != "" {
		srv, err := devredis.Embedded(cfg.embeddedRedis)
		if err != nil {
			return err
		}
		defer srv.Close()
		client, err := devredis.EmbeddedClient(srv.Addr)
		if err != nil {
			return fmt.Errorf("embedded redis: %w", err)
		}
		defer client.Close() // after the cache's Close, deferred below
		cacheOpts.Redis = client
		log.Warn("running on the in-process Redis-protocol server: bus-only, no tracking, no persistence; for trying, not production",
			zap.String("redis", srv.String()), zap.Bool("started_here", srv.Closes()))
	}
	cache, err := tiered.New(startCtx, cacheOpts)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	defer cache.Close()

	proxy := image.NewProxy(image.New(cache, image.Options{}), image.ProxyOptions{
		AllowedHosts:         cfg.imageHosts,
		AllowPrivateNetworks: cfg.imageAllowPrivate,
		Logger:               log.Named("image"),
	})
	defer proxy.Close()

	mux := http.NewServeMux()
	api := newAPI(cache, db, cacheOpts, log)
	api.register(mux)
	if err := m.register(cache, api.likes, proxy); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	mux.Handle("GET /proxy/image", proxy)
	mux.Handle("GET /api/cache-stats", tiered.StatsHandler(cache))
	mux.Handle("GET /metrics", m.handler)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           accessLog(log, mux),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", zap.String("addr", ln.Addr().String()), zap.String("invalidation", cache.Mode().String()),
		zap.Strings("image_hosts", cfg.imageHosts))

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutCtx, cancelShut := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancelShut()
	err = srv.Shutdown(shutCtx)
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}

// metrics serves /metrics: OpenTelemetry instruments (package otelmetrics) read by the
// OpenTelemetry Prometheus exporter, into a registry of the webapp's own.
type metrics struct {
	provider *sdkmetric.MeterProvider
	observer *otelmetrics.Observer // the cache's Options.Observer: load and Redis call durations
	handler  http.Handler
	regs     []*otelmetrics.Registration
}

func newMetrics() (*metrics, error) {
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return nil, err
	}
	m := &metrics{
		provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter)),
		handler:  promhttp.HandlerFor(registry, promhttp.HandlerOpts{}),
	}
	if m.observer, err = otelmetrics.NewObserver(m.provider); err != nil {
		m.close()
		return nil, err
	}
	return m, nil
}

// register makes the cache's, the like counters' and the proxy's counters observable.
func (m *metrics) register(c *tiered.Cache, likes *counter.Counters, proxy *image.Proxy) error {
	for _, reg := range []func() (*otelmetrics.Registration, error){
		func() (*otelmetrics.Registration, error) { return otelmetrics.Register(c, m.provider) },
		func() (*otelmetrics.Registration, error) { return otelmetrics.RegisterCounters(likes, m.provider) },
		func() (*otelmetrics.Registration, error) { return otelmetrics.RegisterProxy(proxy, m.provider) },
	} {
		r, err := reg()
		if err != nil {
			return err
		}
		m.regs = append(m.regs, r)
	}
	return nil
}

func (m *metrics) close() {
	for _, r := range m.regs {
		_ = r.Close()
	}
	_ = m.provider.Shutdown(context.Background())
}

// accessLog logs each request with its status and duration.
func accessLog(log *zap.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		log.Debug("request", zap.String("method", r.Method), zap.String("path", r.URL.Path),
			zap.Int("status", rec.status), zap.Duration("took", time.Since(start)))
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
