package tiered

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/rueidis"

	"github.com/synspirit/tiercache/internal/rcall"
)

// The L2 tier: reads and writes of envelopes in Redis, through the cache's Caller (deadline,
// breaker, error classification: internal/rcall).

// l2Get reads the envelope of a value of at most maxSize bytes (the group's limit) in one
// round trip, with the TTL Redis holds for it if withTTL. It reads with GETRANGE rather than
// GET, so that a larger value (written by an instance whose group allows more, or by anything
// else) is never moved whole: one byte past the limit says it is too large, and it is a miss.
// Its outcome is counted in the cache's counters and the group's, gc. A missing key reads as
// "" (no envelope is empty). The TTL is whatever Redis holds now, whoever set it (EXPIRE,
// PEXPIRE, PERSIST from another client), so that an L1 entry never outlives it: only a read
// that may fill L1 asks for it (a PTTL beside the GETRANGE); the others get ttl -1. ttl < 0
// means none. The bytes are a view of the reply's memory: decode them, do not keep them. A
// value over the limit comes with errOversize and the bytes read; an empty string, known
// from the PTTL of a key that exists, with errEmptyValue and no bytes.
func (c *Cache) l2Get(ctx context.Context, gc *groupCounters, key string, maxSize int64, withTTL bool) (raw []byte, ttl time.Duration, err error) {
	limit := envelopeHeaderSize + maxSize // the last byte index read is limit: one too many
	b := c.caller.B()
	get := getrange(b, key, limit)
	var s string
	ttl = -1
	exists := false
	if !withTTL {
		s, err = c.caller.DoMoving(ctx, get, maxSize).ToString()
	} else {
		res := c.caller.DoMultiMoving(ctx, maxSize, get, b.Pttl().Key(key).Build())
		s, ttl, exists, err = withPTTL(res[0], res[1])
	}
	raw, err = c.l2Outcome(gc, s, exists, err, limit)
	return raw, ttl, err
}

// getrange is the read of an envelope under limit (see l2Get).
func getrange(b rueidis.Builder, key string, limit int64) rueidis.Completed {
	return b.Getrange().Key(key).Start(0).End(limit).Build()
}

// withPTTL is the value and TTL of a GETRANGE's and PTTL's results, and whether the key
// exists: a key gone between the two commands is a miss ("").
func withPTTL(get, pttl rueidis.RedisResult) (s string, ttl time.Duration, exists bool, err error) {
	if s, err = get.ToString(); err != nil {
		return "", -1, false, err
	}
	ms, err := pttl.AsInt64()
	if err != nil {
		return "", -1, false, err
	}
	if ms == -2 {
		return "", -2 * time.Millisecond, false, nil
	}
	return s, time.Duration(ms) * time.Millisecond, true, nil
}

// l2Outcome counts and classifies one value read by l2Get or l2GetMany: s read with a limit
// of limit bytes (exists: the key is known to exist), or err.
func (c *Cache) l2Outcome(gc *groupCounters, s string, exists bool, err error, limit int64) ([]byte, error) {
	switch {
	case err != nil:
		c.st.l2Errors.Add(1)
		gc.l2Errors.Add(1)
		return nil, err
	case s == "":
		c.st.l2Misses.Add(1)
		gc.l2Misses.Add(1)
		if exists {
			return nil, errEmptyValue
		}
		return nil, ErrNotFound
	case int64(len(s)) > limit:
		c.st.l2Misses.Add(1)
		gc.l2Misses.Add(1)
		c.st.tooLarge.Add(1)
		return unsafe.Slice(unsafe.StringData(s), len(s)), errOversize
	}
	c.st.l2Hits.Add(1)
	gc.l2Hits.Add(1)
	return unsafe.Slice(unsafe.StringData(s), len(s)), nil
}

var (
	// errOversize is l2Get's answer for a value larger than the group's MaxValueBytes.
	errOversize = notFound("larger than the group's MaxValueBytes")
	// errEmptyValue is l2Get's answer for a key that holds an empty string (no envelope is empty).
	errEmptyValue = notFound("empty string")
)

// readCond is the condition of a load's store after a read of its key that found raw (or
// nothing) and ended with err, under limit; withTTL: the read asked the key's PTTL. ok is
// false when the read tells nothing (it failed).
func readCond(raw []byte, err error, limit int64, withTTL bool) (cond storeCond, ok bool) {
	switch {
	case err == ErrNotFound:
		return storeCond{kind: condAbsent, unsure: !withTTL}, true
	case err == errEmptyValue || raw != nil:
		return sameAs(raw, limit), true
	}
	return storeCond{}, false
}

// l2Set stores an envelope through w: the cache's caller, or ownCaller (see ownWriter). h is
// the key's L1 hash. The value is stored only if cond holds in Redis (see storeCond), and
// stored reports whether it was.
func (c *Cache) l2Set(ctx context.Context, w *rcall.Caller, key string, h uint64, value []byte, ttl time.Duration, cond storeCond) (stored bool, err error) {
	res, settled := w.DoMovingSettled(ctx, setCmd(w.B(), key, value, ttl, cond), int64(len(value)))
	return c.setOutcome(w, res, settled, cond, h)
}

// setOutcome is whether a write made by setCmd under cond stored its value, or its error
// (counted; an unsettled write's key is held, see unsettledWrite).
func (c *Cache) setOutcome(w *rcall.Caller, res rueidis.RedisResult, settled bool, cond storeCond, h uint64) (stored bool, err error) {
	if err := res.Error(); err != nil {
		if rueidis.IsRedisNil(err) { // SET NX: the key exists
			return false, nil
		}
		c.st.l2Errors.Add(1)
		c.unsettledWrite(w, settled, h)
		return false, err
	}
	if cond.kind == condSame {
		n, err := res.AsInt64()
		return n == 1, err
	}
	return true, nil
}

// storeCond is the condition under which a load stores what it loaded: what its read of the
// key found in Redis, so that a write of the key made since, on any instance, stands.
//
//   - condAbsent: the read found nothing. Stored with SET NX, which Redis refuses once anything
//     wrote the key. A Delete made meanwhile changes nothing in Redis (there was nothing to
//     delete), and Redis reports nothing: one made on this instance (or, in BusOnly mode,
//     announced on the bus by another) is known by wrote, a count of those writes by the
//     stripe of their key (1 key in 4096 shares it), and the load then stores nothing. One
//     made on another instance in Tracking mode is not known.
//   - condSame: the read found a value the load replaces (past its TTL, not decodable, too
//     large, of a tag invalidated since). Stored only if the key still holds the same bytes
//     (compareAndSet, a script): any write or Delete since, anywhere, stands.
//   - condNone: the read failed, so nothing is known: stored as it is.
type storeCond struct {
	kind    condKind
	digest  string // condSame: the SHA-1 (hex) of the bytes read, up to the group's limit
	limit   int64  // condSame: the last byte offset read (GETRANGE 0 limit)
	unsure  bool   // condAbsent: the read could not tell an empty string from no key (no PTTL)
	wrote   uint32 // this instance's writes of the key's stripe before the read (localWrites)
	checked bool   // wrote was taken
}

type condKind uint8

const (
	condNone condKind = iota
	condAbsent
	condSame
)

// compareAndSet stores ARGV[3] for ARGV[4] ms under KEYS[1] if the key's first ARGV[2]+1
// bytes still have the SHA-1 ARGV[1]: 1 if stored, else 0.
const compareAndSet = `if redis.sha1hex(redis.call("GETRANGE", KEYS[1], 0, ARGV[2])) == ARGV[1] then
redis.call("SET", KEYS[1], ARGV[3], "PX", ARGV[4]) return 1 end return 0`

// setCmd is the write of an envelope under cond (see l2Set). The compare-and-set is an EVAL
// rather than an EVALSHA: it is rare (a load over a value it could not serve), and an EVAL
// needs no NOSCRIPT round trip, in a pipeline either.
func setCmd(b rueidis.Builder, key string, value []byte, ttl time.Duration, cond storeCond) rueidis.Completed {
	px := max(ttl.Milliseconds(), 1)
	switch cond.kind {
	case condAbsent:
		return b.Set().Key(key).Value(rueidis.BinaryString(value)).Nx().PxMilliseconds(px).Build()
	case condSame:
		return b.Eval().Script(compareAndSet).Numkeys(1).Key(key).
			Arg(cond.digest, strconv.FormatInt(cond.limit, 10), rueidis.BinaryString(value), strconv.FormatInt(px, 10)).Build()
	}
	return b.Set().Key(key).Value(rueidis.BinaryString(value)).PxMilliseconds(px).Build()
}

// sameAs is the condSame condition of bytes raw read with limit: stored only if Redis still holds them.
func sameAs(raw []byte, limit int64) storeCond {
	sum := sha1.Sum(raw)
	return storeCond{kind: condSame, digest: hex.EncodeToString(sum[:]), limit: limit}
}

// localWrites counts this instance's writes (Set, Delete, an eager refresh's), and those the
// bus announces, by the stripe of their key's L1 hash: a load whose read found nothing
// stores nothing if a write of a key of its stripe was made since (see storeCond).
type localWrites [4096]atomic.Uint32

func (w *localWrites) mark(h uint64) uint32 { return w[h%uint64(len(w))].Load() }
func (w *localWrites) bump(h uint64)        { w[h%uint64(len(w))].Add(1) }

// since tells whether a write of a key of h's stripe was made here since mark m.
func (w *localWrites) since(h uint64, m uint32) bool { return w.mark(h) != m }

// unsettledWrite is told, after a write through w of the keys of L1 hashes hs failed,
// whether its fate is settled. A write through the listener that may still be applied (see
// rcall's DoMovingSettled) would be heard of by no one here (NOLOOP): its keys stay out of
// L1 until the listener answers a PING, which Redis answers after that write (see
// tracker.unsettledWrite).
func (c *Cache) unsettledWrite(w *rcall.Caller, settled bool, hs ...uint64) {
	if !settled && w == c.ownCaller {
		c.tracker.unsettledWrite(c, hs)
	}
}

// ownWriter is the caller for a write whose value this instance will keep in L1 (keep: the
// group's values go to L1, and its prefix is tracked): the listener's connection, which
// tracks with NOLOOP, so that Redis tells this instance of no write of its own. Otherwise
// the data client, and own is false.
//
// Through the data client, Redis would report the write to the listener a moment after its
// reply: the push would drop the value filled from the write, and the next read would go to
// Redis for what this instance just wrote or loaded. It cannot be told apart from the push
// of another instance's write of the key, which Redis merges with it when both come in one
// turn of its event loop. With NOLOOP, Redis leaves the listener out of a key's push only
// if the listener made the key's last write of that turn: a push that does come is for a
// newer value, and drops the filled one (see keepOwn). A write that fails without Redis's
// answer may still land later: then its keys stay out of L1 until the listener is known to
// be past it (unsettledWrite).
func (c *Cache) ownWriter(keep bool) (w *rcall.Caller, own bool) {
	if keep && c.ownCaller != nil && c.l1.Live() {
		return c.ownCaller, true
	}
	return c.caller, false
}
