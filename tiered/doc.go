// Package tiered is a two-tier cache: an in-process L1 (ristretto) in front of a shared Redis
// L2 (rueidis), kept coherent across every instance of a service.
//
// # Use
//
//	c, err := tiered.New(ctx, tiered.Options{RedisURL: "redis://localhost:6379/0", KeyPrefix: "synspirit:"})
//	defer c.Close()
//	articles := tiered.NewGroup[[]Article](c, "data:articles:list", 5*time.Minute)
//	list, err := articles.GetOrLoad(ctx, articles.Key(page, perPage), loadFromDB)
//	err = articles.Delete(ctx, key) // on every instance
//
// # Consistency
//
// An instance serves a value from L1 only while no newer write to its key is known to it.
// Every L1 entry records the generation of its key's stripe (one of 4096 atomic counters
// chosen by the key's hash) and the cache's epoch, both read before the Redis read or write
// that produced it; a lookup accepts the entry only if both are unchanged. Invalidating a
// key bumps its stripe (one atomic add), flushing L1 bumps the epoch (and empties the 4096
// slots of the lock-free front that serves hot keys), without touching ristretto, whose
// buffered sets and deletes can otherwise bring old values back.
//
// Invalidations come from this instance's own writes, from Redis server-assisted tracking
// (CLIENT TRACKING BCAST on KeyPrefix, which reports writes by anyone, expiries, evictions
// and FLUSHALL), and from the pub/sub bus where tracking cannot see. A lost connection
// means lost invalidations, so it flushes L1, and L1 is not filled again until the listener
// is back. After Set returns, Get on the same instance returns the new value: a write
// invalidates the key locally and the next read goes to Redis, which orders racing writes.
// Other instances stop serving the old value when the invalidation reaches them: on
// loopback about 120–140 µs at the median, p99 212 µs with tracking and 237 µs bus-only in the last
// report run, the Redis read of the new value included (bench/RESULTS.md). The invalidation
// reaches Go through its network poller: in a process whose every P is busy with CPU-bound
// work it is heard late, as for any Go client.
//
// An L1 entry never outlives its Redis entry, and in BusOnly mode it lives at most
// Options.L1TTL (default 30 s), which bounds the damage of a lost bus message.
//
// # Failure
//
// Every Redis call has a deadline (Options.Timeout, 100 ms). When Redis is unreachable,
// Get and Set return errors matching ErrUnavailable, GetOrLoad serves from the loader, and
// after Options.BreakerThreshold consecutive failures a circuit breaker answers at once
// instead of waiting, letting one probe through every Options.BreakerCooldown and closing
// when it succeeds. A value in Redis that is not a valid envelope is a miss, logged and
// counted (Stats.DecodeErrors), never a panic. New needs Redis to answer unless
// Options.StartWithoutRedis is set; then an instance can start during an outage and
// connects by itself when Redis is back.
//
// # Keys
//
// A group's entries live in Redis as <KeyPrefix><group name>:<key>. Group.Key builds a key
// from arguments like the original make_key(prefix, *args): the SHA-256 of a canonical,
// type-tagged, length-prefixed encoding of the arguments, truncated to 128 bits, in hex. It
// is identical across processes, machines and Go versions; see makeKey for the encoding.
//
// # L2 format
//
// Values are stored behind a 12-byte header: magic 0xC7, format version, flags, codec id and
// the logical expiry in Unix milliseconds. See envelope.go.
package tiered
