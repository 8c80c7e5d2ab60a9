package tiered

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
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
// value over the limit is errOversize; an empty string, known from the PTTL of a key that
// exists, errEmptyValue.
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
		return nil, errOversize
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
// nothing) and ended with err; withTTL: the read asked the key's PTTL. A value over the
// limit was not read whole: its digest must be asked of Redis (digestOf). A read that failed
// tells nothing: condNone.
func readCond(raw []byte, err error, withTTL bool) storeCond {
	switch {
	case err == ErrNotFound:
		return storeCond{kind: condAbsent, unsure: !withTTL}
	case err == errOversize:
		return storeCond{kind: condSame, digestLater: true}
	case err == errEmptyValue || raw != nil:
		return sameAs(raw)
	}
	return storeCond{}
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
//     made on another instance in Tracking mode is not known, nor one made here in the round
//     trip between that check and the SET.
//   - condSame: the read found a value the load replaces (past its TTL, not decodable, too
//     large, of a tag invalidated since, an empty string). Stored only if the key still holds
//     the same value, compared by its fingerprint in a script (compareAndSet): any write or
//     Delete since, anywhere, stands. A value over the limit is not read whole: Redis
//     fingerprints it (digestOf), once the read has found it too large. The fingerprint is
//     the SHA-1 of the value's first and last fingerprintEdge bytes and its length, so that
//     Redis, which runs the script alone, hashes at most 8 KiB whatever the value's size: a
//     write of a value of the same length, the same first and last 4 KiB (its envelope's
//     header, expiry to the millisecond included, among them) and another middle is taken
//     for the value read.
//   - condNone: the read failed, so nothing is known: stored as it is, unless wrote moved.
//   - condUnknown: the read found a value too large to read, and Redis could not fingerprint
//     it (a timeout, the breaker): nothing is stored.
type storeCond struct {
	kind        condKind
	digest      string // condSame: the fingerprint of the value read (see fingerprint)
	digestLater bool   // condSame: digest is to be asked of Redis (a value over the limit)
	orAbsent    bool   // condSame: an empty value read without PTTL, which may have been no key
	unsure      bool   // condAbsent: the read could not tell an empty string from no key (no PTTL)
	wrote       uint32 // writes of the key's stripe before the read (localWrites)
}

type condKind uint8

const (
	condNone condKind = iota
	condAbsent
	condSame
	condUnknown
)

// yielded tells whether a load under cond of the key of L1 hash h must not store because a
// write of its stripe was made since its read (see storeCond). A compare-and-set knows
// better by itself.
func (c *Cache) yielded(h uint64, cond storeCond) bool {
	return cond.kind != condSame && c.wrote.since(h, cond.wrote)
}

// storable tells whether anything may be stored under cond (not condUnknown).
func (cond storeCond) storable() bool { return cond.kind != condUnknown }

// fingerprintEdge is how many bytes of each end of a value its fingerprint covers.
const fingerprintEdge = 4096

// fingerprintLua is the fingerprint of the string key k holds (see storeCond), in Lua: the
// same as fingerprint's. GETRANGE clamps a start before the string's to its first byte, as
// fingerprint's tail does.
var fingerprintLua = fmt.Sprintf(`redis.sha1hex(redis.call("GETRANGE", k, 0, %d) .. redis.call("GETRANGE", k, -%d, -1) .. redis.call("STRLEN", k))`,
	fingerprintEdge-1, fingerprintEdge)

// fingerprint is the fingerprint of a value read whole (see storeCond).
func fingerprint(v []byte) string {
	h := sha1.New()
	h.Write(v[:min(len(v), fingerprintEdge)])
	h.Write(v[max(0, len(v)-fingerprintEdge):])
	h.Write(strconv.AppendInt(nil, int64(len(v)), 10))
	return hex.EncodeToString(h.Sum(nil))
}

// compareAndSet stores ARGV[3] for ARGV[4] ms under KEYS[1] if the key holds a value whose
// fingerprint is ARGV[1], or, with ARGV[2] = "1", if it holds an empty string or nothing: 1
// if stored, else 0.
var compareAndSet = `local k = KEYS[1]
if redis.call("EXISTS", k) == 0 then
  if ARGV[2] ~= "1" then return 0 end
elseif ARGV[2] == "1" then
  if redis.call("STRLEN", k) ~= 0 then return 0 end
elseif ` + fingerprintLua + ` ~= ARGV[1] then return 0 end
redis.call("SET", k, ARGV[3], "PX", ARGV[4]) return 1`

// digestScript is the fingerprint of the value KEYS[1] holds, or nil: for a value too large
// to be read.
var digestScript = rcall.NewScript(`local k = KEYS[1] if redis.call("EXISTS", k) == 0 then return false end return ` + fingerprintLua)

// digestOf completes a condSame whose value was too large to read: Redis fingerprints what
// the key holds now (a write made between the read and now, before the loader ran, is then
// the one compared). A key gone since makes it condAbsent; a failure, condUnknown.
func (c *Cache) digestOf(ctx context.Context, key string, cond storeCond) storeCond {
	if !cond.digestLater {
		return cond
	}
	d, err := c.caller.Exec(ctx, digestScript, []string{key}, nil).ToString()
	switch {
	case rueidis.IsRedisNil(err):
		return storeCond{kind: condAbsent, wrote: cond.wrote}
	case err != nil:
		return storeCond{kind: condUnknown}
	}
	cond.digest, cond.digestLater = d, false
	return cond
}

// setCmd is the write of an envelope under cond (see l2Set). The compare-and-set is an EVAL
// rather than an EVALSHA: it is rare (a load over a value it could not serve), and an EVAL
// needs no NOSCRIPT round trip, in a pipeline either.
func setCmd(b rueidis.Builder, key string, value []byte, ttl time.Duration, cond storeCond) rueidis.Completed {
	px := max(ttl.Milliseconds(), 1)
	switch cond.kind {
	case condAbsent:
		return b.Set().Key(key).Value(rueidis.BinaryString(value)).Nx().PxMilliseconds(px).Build()
	case condSame:
		orAbsent := "0"
		if cond.orAbsent {
			orAbsent = "1"
		}
		return b.Eval().Script(compareAndSet).Numkeys(1).Key(key).
			Arg(cond.digest, orAbsent, rueidis.BinaryString(value), strconv.FormatInt(px, 10)).Build()
	}
	return b.Set().Key(key).Value(rueidis.BinaryString(value)).PxMilliseconds(px).Build()
}

// sameAs is the condSame condition of a value raw that was read whole.
func sameAs(raw []byte) storeCond {
	return storeCond{kind: condSame, digest: fingerprint(raw)}
}

// emptyOrAbsent is the condition of a store after a read without PTTL found "" (no key, or
// an empty string) and SET NX was refused: stored over an empty string, or no key.
func emptyOrAbsent(cond storeCond) storeCond {
	return storeCond{kind: condSame, orAbsent: true, wrote: cond.wrote}
}

// ownWriterFor is ownWriter for a load's store under cond: a compare-and-set goes through the
// data client, whatever keep says. Redis runs the script's SET as its own client, which
// NOLOOP does not leave out: through the listener it would be reported back to this instance
// as another's write anyway, and dropped from L1 a moment after the fill.
func (c *Cache) ownWriterFor(keep bool, cond storeCond) (w *rcall.Caller, own bool) {
	return c.ownWriter(keep && cond.kind != condSame)
}

// localWrites counts this instance's writes (Set, Delete, an eager refresh's), and those the
// bus announces, by the stripe of their key's L1 hash: a load that is not a compare-and-set
// stores nothing if a write of a key of its stripe was made since its read (see storeCond).
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
