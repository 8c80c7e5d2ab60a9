// Package counter serves counters — likes, favourites, views — from Redis atomics.
//
// A counter is never held in an in-process cache: every read and every write is one round trip
// to Redis (a Lua script for the writes that need more than one command), so the count is exact
// and atomic across every instance of the service. The rest of tiercache keeps an L1 in front of
// Redis; counters deliberately do not, because a count that changes on every click would be
// invalidated faster than it could be served.
//
// # Keys
//
// A [Key] names a counter by target type, target ID and counter name, and maps to the Redis key
//
//	<Options.KeyPrefix>count:<target>:<id>:<counter>
//
// for example "synspirit:count:article:123:likes". Parts made only of the bytes [A-Za-z0-9_.-]
// appear unchanged; every other byte (':', '%', '{', '}', spaces, non-ASCII, ...) is
// percent-encoded as %XX, so two different keys never share a Redis key and no key part can pick
// a Redis Cluster hash slot through braces. An empty part is [ErrBadKey].
//
// # Cache mode and persistent mode
//
// With Options.TTL > 0 (the original design used [DefaultCacheTTL], one minute) a counter
// mirrors a count whose truth lives in a database. It expires, and an increment of an expired
// counter does not recreate it from zero — that would publish a wrong count — but fails with
// [ErrNotFound] so that the next read reloads it: [Counters.GetOrLoad] calls the loader on a miss
// and seeds the counter with SET NX, so a seed never overwrites a concurrent seed or the
// increments made on it. Increments leave the counter's remaining TTL unchanged: the count is
// reloaded from the database at least once per TTL, which bounds any drift between the two.
//
// With Options.TTL == 0 (the zero value) counters are persistent: Redis holds the truth, an
// increment of a missing counter creates it from zero, and nothing expires unless
// [Counters.Set] is given a TTL.
//
// # Floor and overflow
//
// Decrements stop at a floor, 0 by default (a like count cannot go negative), applied
// atomically inside the script: a decrement that would cross it leaves the counter at the floor.
// Options.Floor moves the floor and Options.NoFloor removes it. Crossing the int64 range is
// [ErrOverflow]; the counter is left unchanged. Arithmetic is done by Redis INCRBY, never in Lua
// floating point, so values beyond 2^53 stay exact.
//
// # Errors
//
// Build counters with [FromCache] (they then share the cache's key prefix, timeout, circuit
// breaker and lifetime) or [New] on any rueidis client. Every call has a deadline
// (Options.Timeout) and goes through a circuit breaker, so that during an outage calls fail at
// once instead of each waiting out its deadline. A failure to reach a Redis able to serve is
// reported as an error that matches both [ErrUnavailable] and tiered.ErrUnavailable with
// errors.Is, classified exactly as the tiered package does. When that happens to a write, its
// outcome is unknown: the command may or may not have been applied before the connection
// failed. An error reply from Redis (a key of the wrong type) is reported as such. If the
// caller's own context ends first, the error wraps its context.Canceled or
// context.DeadlineExceeded instead: the caller gave up, Redis did not fail. After the cache a
// counter was built on is closed, calls fail with [ErrClosed].
package counter
