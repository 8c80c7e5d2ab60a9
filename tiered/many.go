package tiered

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/synspirit/tiercache/internal/flight"
	"github.com/synspirit/tiercache/internal/rcall"
)

// Batches: a page of keys read and loaded in as few round trips as there are Redis nodes.
//
// L1 first; the rest in one pipeline per node (GETRANGE for each key, and PTTL where the
// value may go to L1, as single reads do: a value over the group's limit is never moved
// whole, and no L1 entry outlives its Redis TTL); one loader call for what is still missing;
// its values stored in one pipeline, and filled into L1 under the same guard as single reads. Loads share keys with
// concurrent GetOrLoad calls and batches (internal/flight): no key is loaded twice at once.

// GetMany returns the values of keys that either tier holds: a key that is missing, expired,
// a cached miss or undecodable is absent from the map. If Redis cannot be read for some
// keys, the map holds the others and the error matches ErrUnavailable. An empty key is an
// error matching ErrInvalidOptions, before anything is read.
func (g *Group[T]) GetMany(ctx context.Context, keys []string) (map[string]T, error) {
	out := make(map[string]T, len(keys))
	st, rest, err := g.manyFromL1(ctx, keys, out, "get many")
	if err != nil || len(rest) == 0 {
		return out, err
	}
	found, _, errs, _ := g.readMany(ctx, st, rest, false)
	for k, v := range found {
		out[k] = v.(T)
	}
	return out, g.manyError("get many", errs)
}

// GetOrLoadMany returns the values of keys, loading what neither tier holds with one call of
// load, which gets the missing keys and returns the values it has: a key it leaves out is a
// miss (cached as such with WithNotFoundTTL), absent from the map. Loaded values are stored
// for the group's TTL (or TTL(d) among opts, or the loader's CacheFor). Keys that a
// concurrent GetOrLoad or GetOrLoadMany is loading are waited for, not loaded again.
//
// Partial failures: keys Redis cannot be read for are loaded too (with Redis down the loader
// serves everything); values Redis cannot store are returned, not kept in L1. If load fails,
// the map holds what the tiers had (and fail-safe values, with FailSafeMaxStale), and the
// error wraps the loader's (a *PanicError for a panic). A loaded value over the group's
// MaxValueBytes is returned, not cached, and the error matches ErrTooLarge. As with
// GetOrLoad, a value whose key was written while the loader ran is returned, not stored.
func (g *Group[T]) GetOrLoadMany(ctx context.Context, keys []string, load func(ctx context.Context, missing []string) (map[string]T, error), opts ...CallOption) (map[string]T, error) {
	out := make(map[string]T, len(keys))
	if load == nil && g.err == nil {
		return out, g.fail("get or load many", "", errNilLoader)
	}
	co, err := g.callOptions(opts)
	if err != nil {
		return out, g.fail("get or load many", "", err)
	}
	st, rest, err := g.manyFromL1(ctx, keys, out, "get or load many")
	if errors.Is(err, ErrClosed) || errors.Is(err, ErrInvalidOptions) || len(rest) == 0 && err == nil {
		return out, err
	}
	var stale map[string]any
	var reads map[string]readMark
	var missing []string
	if err != nil { // the generation cannot be read: the loader serves everything
		if expiredCtx(ctx, err) {
			return out, err
		}
		missing = rest
		st = nil
	} else {
		found, st2, errs, r := g.readMany(ctx, st, rest, true)
		stale, reads = st2, r
		for _, k := range rest {
			if v, ok := found[k]; ok {
				out[k] = v.(T)
			} else if e, failed := errs[k]; !failed || !errors.Is(e, errCachedMiss) {
				missing = append(missing, k)
			}
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	loaded, errs, tooBig := g.loadMany(ctx, st, missing, reads, load, co)
	for k, v := range loaded {
		out[k] = v.(T)
	}
	loadErr := tooBig
	for _, k := range missing {
		e, ok := errs[k]
		if !ok || errors.Is(e, flight.ErrMissing) || errors.Is(e, ErrNotFound) {
			continue // a miss: the loader left the key out, or said it does not exist (a joined GetOrLoad's)
		}
		if sv, ok := stale[k]; ok && !errors.Is(e, ErrTooLarge) {
			g.c.st.failSafeServed.Add(1)
			out[k] = sv.(T)
			continue
		}
		if loadErr == nil {
			loadErr = e
		}
	}
	if loadErr != nil {
		var le *loaderError
		if errors.As(loadErr, &le) {
			return out, g.fail("load many", "", le.err)
		}
		return out, g.fail("get or load many", "", loadErr)
	}
	return out, nil
}

// manyFromL1 checks keys, serves what L1 holds into out, and returns the group's state and
// the keys left to read. A cached miss in L1 is left out of both.
func (g *Group[T]) manyFromL1(ctx context.Context, keys []string, out map[string]T, op string) (*groupState, []string, error) {
	if g.err != nil {
		return nil, nil, g.err
	}
	for _, k := range keys {
		if k == "" {
			return nil, nil, g.fail(op, "", errEmptyKey)
		}
	}
	if g.c.isClosed() {
		return nil, nil, ErrClosed
	}
	st, err := g.resolve(ctx)
	if err != nil {
		return nil, keys, g.fail(op, "", err)
	}
	var rest []string
	for _, k := range keys { // a repeated key served by L1 is served twice, into one entry
		h := st.hash(k)
		if v, ok := g.c.l1.Get(h, g.ns.owner, k); ok {
			if v, ok := g.fromL1(h, v); ok {
				if t, ok := v.(T); ok && v != negative {
					out[k] = t
				}
				continue
			}
		}
		rest = append(rest, k)
	}
	return st, dedupe(rest), nil
}

// dedupe drops repeated keys from ks, in place; the first of each stays, in order. Only the
// keys L1 did not serve get here: a warm page pays for no set.
func dedupe(ks []string) []string {
	if len(ks) < 2 {
		return ks
	}
	seen := make(map[string]struct{}, len(ks))
	n := 0
	for _, k := range ks {
		if _, dup := seen[k]; !dup {
			seen[k] = struct{}{}
			ks[n] = k
			n++
		}
	}
	return ks[:n]
}

// readMany reads keys from Redis in one pipeline per node, and fills L1. It returns the
// values found, the stale ones (past their TTL, kept for fail-safe) and, for the others, why
// not: a miss (matching ErrNotFound), errCachedMiss, or a failure to read. With mark, reads
// tells the load of each key not found how its read went (see readMark).
func (g *Group[T]) readMany(ctx context.Context, st *groupState, keys []string, mark bool) (found, stale map[string]any, errs map[string]error, reads map[string]readMark) {
	found = make(map[string]any, len(keys))
	errs = map[string]error{}
	if mark {
		reads = make(map[string]readMark, len(keys))
	}
	snaps := make([]snapshot, len(keys))
	hashes := make([]uint64, len(keys))
	full := make([]string, len(keys))
	var wrote []uint32
	if mark {
		wrote = make([]uint32, len(keys))
	}
	for i, k := range keys {
		hashes[i] = st.hash(k)
		if mark {
			wrote[i] = g.c.wrote.mark(hashes[i]) // before the read (see storeCond)
		}
		snaps[i] = g.snapshot(hashes[i])
		full[i] = st.base + k
	}
	// The last snapshot decides whether to ask the TTLs: a group is armed once, for good.
	withTTL := len(snaps) > 0 && g.mayFill(snaps[len(snaps)-1])
	raws, ttls, rerrs := g.c.l2GetMany(ctx, &g.ns.st, full, g.maxValue, withTTL)
	g.c.prefetchTags(ctx, raws)
	// Every value is decoded before any goes to L1: decoding them back to back, rather than
	// between L1 fills, keeps the codec's code and data in the CPU's caches.
	opens := make([]opened, len(keys))
	for i, k := range keys {
		if rerrs[i] == nil {
			opens[i], rerrs[i] = g.open(ctx, st, k, raws[i])
		}
	}
	// markRead records, with mark, what the read of keys[i], which served nothing, tells its load.
	markRead := func(i int, err error) {
		if mark && err != errCachedMiss {
			cond := g.c.digestOf(ctx, full[i], readCond(raws[i], rerrs[i], withTTL))
			cond.wrote = wrote[i]
			reads[keys[i]] = readMark{s: snaps[i], cond: cond}
		}
	}
	for i, k := range keys {
		if rerrs[i] != nil {
			markRead(i, rerrs[i])
			errs[k] = rerrs[i]
			continue
		}
		v, err := g.keep(opens[i], snaps[i], st, k, hashes[i], ttls[i])
		if err != nil {
			markRead(i, err) // read whole, not served (past its TTL): compared as read
		}
		switch {
		case err == nil:
			found[k] = v
		case err == errStale:
			if stale == nil {
				stale = map[string]any{}
			}
			stale[k] = v
			errs[k] = err
		default:
			errs[k] = err
		}
	}
	return found, stale, errs, reads
}

// readMark is what a batch's read of a key tells its load (see groupCore.store): the
// snapshot taken before the read, and the condition of the load's store.
type readMark struct {
	s    snapshot
	cond storeCond
}

// loadMany loads missing keys with one loader call, shared with concurrent loads of the same
// keys, and stores what it returns. st is nil when Redis cannot be asked: then nothing is
// stored. reads tells of each key's read (nil: none).
func (g *Group[T]) loadMany(ctx context.Context, st *groupState, missing []string, reads map[string]readMark, load func(context.Context, []string) (map[string]T, error), co callOpts) (map[string]any, map[string]error, error) {
	flightKey := func(k string) string { return "\x00" + g.name + "\x00" + k }
	if st != nil {
		flightKey = func(k string) string { return st.base + k }
	}
	var tooBig atomic.Pointer[tooLargeError] // written by the batch, which may outlive a caller that left
	byFlight := make(map[string]string, len(missing))
	fks := make([]string, len(missing))
	for i, k := range missing {
		fks[i] = flightKey(k)
		byFlight[fks[i]] = k
	}
	vals, ferrs := g.c.flight.DoMany(ctx, fks, func(lctx context.Context, led []string) (map[string]any, error) {
		keys := make([]string, len(led))
		for i, fk := range led {
			keys[i] = byFlight[fk]
		}
		got, err := g.loadBatch(lctx, st, keys, reads, load, co)
		if got == nil {
			return nil, err
		}
		var te *tooLargeError
		if errors.As(err, &te) {
			tooBig.Store(te) // values over the limit: returned, not cached
		}
		res := make(map[string]any, len(got))
		for k, v := range got {
			res[flightKey(k)] = v
		}
		return res, nil
	})
	out := make(map[string]any, len(vals))
	for fk, v := range vals {
		if v != negative {
			out[byFlight[fk]] = v
		}
	}
	errs := make(map[string]error, len(ferrs))
	for fk, e := range ferrs {
		errs[byFlight[fk]] = e
	}
	for fk, v := range vals {
		if v == negative {
			errs[byFlight[fk]] = errCachedMiss
		}
	}
	if te := tooBig.Load(); te != nil {
		return out, errs, te
	}
	return out, errs, nil
}

// loadBatch calls the loader for keys and stores its values (and, with WithNotFoundTTL, its
// misses) in one pipeline, then in L1, each as groupCore.store does: a key written since
// its read (reads) keeps that write. It returns the values by key (negative for a cached
// miss); a value over the limit is returned with an ErrTooLarge error.
func (g *Group[T]) loadBatch(ctx context.Context, st *groupState, keys []string, reads map[string]readMark, load func(context.Context, []string) (map[string]T, error), co callOpts) (map[string]any, error) {
	var snaps []snapshot
	var hashes []uint64
	var conds []storeCond
	if st != nil {
		snaps = make([]snapshot, len(keys))
		hashes = make([]uint64, len(keys))
		conds = make([]storeCond, len(keys))
		for i, k := range keys {
			hashes[i] = st.hash(k)
			if r, ok := reads[k]; ok {
				snaps[i], conds[i] = r.s, r.cond
			} else {
				snaps[i] = g.snapshot(hashes[i])
				conds[i] = storeCond{wrote: g.c.wrote.mark(hashes[i])}
			}
		}
	}
	var callRefs []tagRef
	var tagErr error
	if st != nil {
		// The tags' versions before the loader reads what they stand for.
		callRefs, tagErr = g.c.tagRefs(ctx, co.tags, true)
	}
	g.countLoad()
	lc := g.c
	if st == nil {
		lc = nil // Redis cannot be asked: nothing is cached, there are no tags to record
	}
	got, ctl, err := callLoader(ctx, &g.groupCore, lc, func(ctx context.Context) (map[string]T, error) { return load(ctx, keys) })
	if tagErr != nil {
		ctl.noCache.Store(true)
		g.c.log.Warn("tags not recorded: the loaded values are not cached", zap.String("group", g.name), zap.Error(tagErr))
	}
	if err != nil {
		g.countLoadError()
		return nil, &loaderError{err}
	}
	out := make(map[string]any, len(got))
	for _, k := range keys {
		if v, ok := got[k]; ok {
			out[k] = v
		}
	}
	if st == nil || ctl.noCache.Load() {
		return out, nil
	}
	ttl := g.ttlFor(ctl, co.ttl)
	var (
		full    []string
		envs    [][]byte
		ttls    []time.Duration
		at      []int // index in keys
		refs    [][]tagRef
		tooBig  error
		missTTL time.Duration
	)
	if g.notFoundTTL > 0 {
		missTTL = g.ttlFor(ctl, g.notFoundTTL)
	}
	yielded := func(i int) bool { // written here since its read: that write stands
		if !conds[i].storable() {
			return true // not counted: nothing was written
		}
		if g.c.yielded(hashes[i], conds[i]) {
			g.countYield()
			return true
		}
		return false
	}
	for i, k := range keys {
		v, ok := got[k]
		kr := ctl.tagRefs(callRefs, k)
		switch {
		case ok:
			env, err := g.encode(v, ttl, kr)
			if err != nil {
				if errors.Is(err, ErrTooLarge) && tooBig == nil {
					tooBig = err
				}
				continue
			}
			if yielded(i) {
				continue
			}
			full, envs, ttls, at = append(full, st.base+k), append(envs, env), append(ttls, g.l2TTL(ttl)), append(at, i)
			refs = append(refs, kr)
		case missTTL > 0:
			out[k] = negative
			if yielded(i) {
				continue
			}
			full, envs, ttls, at = append(full, st.base+k), append(envs, g.encodeMiss(missTTL, kr)), append(ttls, missTTL), append(at, i)
			refs = append(refs, kr)
		}
	}
	hs := make([]uint64, len(full))
	cs := make([]storeCond, len(full))
	for j, i := range at {
		hs[j], cs[j] = hashes[i], conds[i]
	}
	keep := len(snaps) > 0 && g.mayFill(snaps[0])
	storedOK, own, errs := g.c.storeMany(ctx, keep, full, hs, envs, ttls, cs)
	var kept [2][]int // index in full of the values Redis confirmed: through the data client, through the listener
	for j, err := range errs {
		switch {
		case err != nil:
			g.c.log.Debug("loaded value not stored in redis", zap.String("key", full[j]), zap.Error(err))
			if k := keys[at[j]]; out[k] == negative {
				delete(out, k)
			}
			// not confirmed by Redis: not in L1 either
		case !storedOK[j]:
			g.countYield() // Redis holds a value written since the read
		case own[j]:
			kept[1] = append(kept[1], j)
		default:
			kept[0] = append(kept[0], j)
		}
	}
	for o, js := range kept {
		khs, kss := make([]uint64, len(js)), make([]snapshot, len(js))
		for n, j := range js {
			khs[n], kss[n] = hs[j], snaps[at[j]]
		}
		fillSnaps, keepSnaps := g.keepOwnMany(o == 1, khs, kss)
		for n, j := range js {
			if !keepSnaps[n] {
				continue
			}
			i := at[j]
			k := keys[i]
			if out[k] == negative {
				g.fillL1(hashes[i], fillSnaps[n], st, k, withTags(negative, refs[j]), 0, missTTL, missTTL)
				continue
			}
			g.fillL1(hashes[i], fillSnaps[n], st, k, withTags(out[k], refs[j]), int64(len(envs[j])-envelopeHeaderSize), ttl, ttl)
		}
	}
	return out, tooBig
}

// manyError sums up the read failures of a batch: nil when every key was read (misses are
// not failures).
func (g *Group[T]) manyError(op string, errs map[string]error) error {
	var failed []error
	for _, e := range errs {
		if !errors.Is(e, ErrNotFound) {
			failed = append(failed, e)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return g.fail(op, "", fmt.Errorf("%d of %d keys not read: %w", len(failed), len(errs), failed[0]))
}

// l2GetMany reads many envelopes, one pipeline per node (see l2Get), with their Redis TTLs
// if withTTL (else -1). For each key: its bytes (a view of the reply's memory), its TTL, or
// the reason it has none. Outcomes are counted in the cache's counters and the group's, gc.
func (c *Cache) l2GetMany(ctx context.Context, gc *groupCounters, keys []string, maxSize int64, withTTL bool) (raws [][]byte, ttls []time.Duration, errs []error) {
	limit := envelopeHeaderSize + maxSize
	b := c.caller.B()
	per := 1
	if withTTL {
		per = 2
	}
	cmds := make(rueidis.Commands, 0, per*len(keys))
	for _, k := range keys {
		cmds = append(cmds, getrange(b, k, limit))
		if withTTL {
			cmds = append(cmds, b.Pttl().Key(k).Build())
		}
	}
	res := c.caller.DoMultiMoving(ctx, int64(len(keys))*maxSize, cmds...)
	raws, ttls, errs = make([][]byte, len(keys)), make([]time.Duration, len(keys)), make([]error, len(keys))
	for i := range keys {
		var s string
		var err error
		exists := false
		if withTTL {
			s, ttls[i], exists, err = withPTTL(res[2*i], res[2*i+1])
		} else {
			s, err = res[i].ToString()
			ttls[i] = -1
		}
		raws[i], errs[i] = c.l2Outcome(gc, s, exists, err, limit)
	}
	return raws, ttls, errs
}

// storeMany stores a batch's envelopes under their conditions (see storeCond): in one
// pipeline per node through the listener when keep (see ownWriterFor), and through the data
// client the compare-and-sets and, over an empty string, the values that an unsure SET NX
// could not store (with nothing to write through the listener, all of the first pipeline
// goes through the data client). hs are the keys' L1 hashes. For each value: whether it was
// stored, and through the listener (own), or its error.
func (c *Cache) storeMany(ctx context.Context, keep bool, keys []string, hs []uint64, values [][]byte, ttls []time.Duration, conds []storeCond) (stored, own []bool, errs []error) {
	stored, own, errs = make([]bool, len(keys)), make([]bool, len(keys)), make([]error, len(keys))
	w1, own1 := c.ownWriterFor(keep, storeCond{})
	var first, second []int // the values of each round trip, by index
	for i := range keys {
		if own1 && conds[i].kind == condSame {
			second = append(second, i)
		} else {
			first = append(first, i)
		}
	}
	// send stores the values of round through w (the listener if o), and returns those an
	// unsure SET NX could not store, whose condition it makes emptyOrAbsent.
	send := func(round []int, w *rcall.Caller, o bool) (again []int) {
		if len(round) == 0 {
			return nil
		}
		b := w.B()
		cmds := make(rueidis.Commands, len(round))
		var size int64
		for n, i := range round {
			cmds[n] = setCmd(b, keys[i], values[i], ttls[i], conds[i])
			size += int64(len(values[i]))
		}
		res, settled := w.DoMultiMovingSettled(ctx, size, cmds...)
		for n, i := range round {
			stored[i], errs[i] = c.setOutcome(w, res[n], settled, conds[i], hs[i])
			own[i] = o
			if errs[i] == nil && !stored[i] && conds[i].kind == condAbsent && conds[i].unsure {
				conds[i] = emptyOrAbsent(conds[i]) // the read could not tell "" from no key
				again = append(again, i)
			}
		}
		return again
	}
	again := send(first, w1, own1)
	w2, own2 := c.ownWriterFor(keep, storeCond{kind: condSame}) // compare-and-sets: the data client
	send(append(second, again...), w2, own2)
	return stored, own, errs
}
