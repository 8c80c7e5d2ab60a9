// Package tiered is a two-tier cache: an in-process L1 (ristretto) in front of a shared Redis
// L2 (rueidis), kept coherent across every instance of a service.
//
//	c, err := tiered.New(ctx, tiered.Options{RedisURL: "redis://localhost:6379/0", KeyPrefix: "synspirit:"})
//	defer c.Close()
//	articles := tiered.NewGroup[[]Article](c, "data:articles:list", 5*time.Minute)
//	list, err := articles.GetOrLoad(ctx, articles.Key(page, perPage), loadFromDB)
//	err = articles.Delete(ctx, key) // on every instance
//
// A [Cache] is made by [New]; values live in typed groups ([NewGroup], [Group]).
// [Group.GetOrLoad] is the workhorse: L1, then Redis, then the loader, one load per key at a
// time. Writes ([Group.Set], [Group.Delete], [Group.Clear], [Cache.Flush]) reach every
// instance: an instance never serves a value from L1 after it has heard of a newer write, and
// a lost connection flushes L1 rather than guess. When Redis is down, calls fail fast with
// [ErrUnavailable] behind a circuit breaker and [Group.GetOrLoad] serves from its loader.
//
// A page reads many keys at once with [Group.GetMany] and [Group.GetOrLoadMany] (one
// pipeline per Redis node, one loader call for the misses). Values that depend on one thing
// carry its tag ([Tags], or [AddTags] in a loader), and [Cache.InvalidateTags] drops them all,
// in every group and on every instance, with one Redis write per tag.
//
// The README has the consistency model in plain words, the failure modes and the measured
// figures.
package tiered
