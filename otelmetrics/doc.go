// Package otelmetrics exports tiercache's metrics through OpenTelemetry
// (go.opentelemetry.io/otel/metric). It is a module of its own: a program that does not
// import it has no OpenTelemetry dependency.
//
// Counts are asynchronous instruments: each collection reads [tiered.Cache.Stats],
// [tiered.Cache.GroupStats], [counter.Counters.Stats] and [image.Proxy.Stats], so they cost
// the cache's hot paths nothing. Durations are histograms fed by an [Observer], which the
// cache is given at creation (tiered.Options.Observer):
//
//	obs, err := otelmetrics.NewObserver(mp)
//	c, err := tiered.New(ctx, tiered.Options{RedisURL: url, Observer: obs})
//	reg, err := otelmetrics.Register(c, mp)
//	defer reg.Close()
//
// # Metrics
//
// The Redis call histogram follows OpenTelemetry's semantic conventions for database
// clients; there are none for caches, so the others are in a tiercache namespace.
// Attributes given with [WithAttributes] are added to every one.
//
//	| name                                  | instrument            | unit        | attributes                                                    | what                                                  |
//	|---------------------------------------|-----------------------|-------------|---------------------------------------------------------------|-------------------------------------------------------|
//	| tiercache.requests                    | counter (async)       | {request}   | tiercache.group, tiercache.tier (l1, l2), tiercache.result (hit, miss; error for l2) | lookups by tier and outcome (L1 hits are sampled unless Options.ExactL1Stats) |
//	| tiercache.loads                       | counter (async)       | {load}      | tiercache.group                                               | loader calls                                          |
//	| tiercache.load.errors                 | counter (async)       | {load}      | tiercache.group                                               | loader calls that failed or panicked                  |
//	| tiercache.loads.shared                | counter (async)       | {request}   |                                                               | GetOrLoad calls that joined another caller's load     |
//	| tiercache.loads.yielded               | counter (async)       | {load}      |                                                               | loaded values not stored: their key was written meanwhile |
//	| tiercache.redis.errors                | counter (async)       | {error}     |                                                               | Redis calls that failed, breaker rejections included  |
//	| tiercache.invalidations               | counter (async)       | {key}       | tiercache.invalidation.source (local, tracking, bus, keyspace) | keys invalidated in L1, by where it was heard         |
//	| tiercache.l1.flushes                  | counter (async)       | {flush}     |                                                               | whole-L1 invalidations                                |
//	| tiercache.breaker.state               | gauge (async)         | {state}     | tiercache.state (closed, open, half-open)                     | 1 for the breaker's state, 0 for the others           |
//	| tiercache.breaker.opens               | counter (async)       | {open}      |                                                               | times the breaker opened                              |
//	| tiercache.fail_safe.answers           | counter (async)       | {answer}    |                                                               | stale values served because the loader or Redis failed |
//	| tiercache.bus.publish.errors          | counter (async)       | {message}   |                                                               | invalidation messages that could not be sent          |
//	| tiercache.load.duration               | histogram             | s           | tiercache.group, error.type (on failure)                      | loader calls (Observer)                               |
//	| db.client.operation.duration          | histogram             | s           | db.system.name (redis), db.operation.name, error.type (on failure) | Redis calls (Observer); a pipeline is "BATCH <name>" or "BATCH" |
//	| tiercache.counter.reads               | counter (async)       | {counter}   | tiercache.result (hit, miss)                                  | counters read ([RegisterCounters])                    |
//	| tiercache.counter.writes              | counter (async)       | {counter}   |                                                               | counters written                                      |
//	| tiercache.counter.loads               | counter (async)       | {load}      |                                                               | GetOrLoad loader calls                                |
//	| tiercache.counter.load.errors         | counter (async)       | {load}      |                                                               | loader calls that failed                              |
//	| tiercache.counter.errors              | counter (async)       | {error}     |                                                               | calls that failed (Redis, a value not a counter)      |
//	| tiercache.image_proxy.requests        | counter (async)       | {request}   |                                                               | requests ([RegisterProxy])                            |
//	| tiercache.image_proxy.hits            | counter (async)       | {request}   |                                                               | images served from the cache                          |
//	| tiercache.image_proxy.fetches         | counter (async)       | {fetch}     |                                                               | origin fetches                                        |
//	| tiercache.image_proxy.fetch.errors    | counter (async)       | {fetch}     |                                                               | origin fetches that failed                            |
//	| tiercache.image_proxy.refusals        | counter (async)       | {request}   |                                                               | URLs the guard refused (403)                          |
//
// error.type is "unavailable" (Redis unreachable, breaker open), "closed", "canceled" or
// "deadline_exceeded" (the caller's context), the first word of a Redis error reply
// ("WRONGTYPE"), "panic" for a loader's panic, and "_OTHER" for any other error. A loader's
// ErrNotFound is an answer, not an error.
//
// Through the Prometheus exporter the names become tiercache_requests_total,
// db_client_operation_duration_seconds and so on.
package otelmetrics
