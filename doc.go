// Package tiercache is a two-tier cache for Go services: an in-process L1 (ristretto) in
// front of a shared Redis L2 (rueidis), kept coherent across every instance of a service by
// Redis server-assisted client-side caching and a pub/sub invalidation bus.
//
// The root package holds no code; the APIs live in its packages:
//
//   - tiered: the Cache (L1 + L2, coherence, fail-safe, stats) and the typed Data API Group[T].
//   - bus: the invalidation bus over Redis pub/sub.
//   - image: an image blob cache and a safe HTTP image proxy.
//   - counter: counters served only from Redis atomics (likes, favourites, views).
//
// See README.md for the consistency model and the numbers.
package tiercache
