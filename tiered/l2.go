package tiered

import (
	"context"
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
// means none. The bytes are a view of the reply's memory: decode them, do not keep them.
func (c *Cache) l2Get(ctx context.Context, gc *groupCounters, key string, maxSize int64, withTTL bool) (raw []byte, ttl time.Duration, err error) {
	limit := envelopeHeaderSize + maxSize // the last byte index read is limit: one too many
	b := c.caller.B()
	get := getrange(b, key, limit)
	var s string
	ttl = -1
	if !withTTL {
		s, err = c.caller.DoMoving(ctx, get, maxSize).ToString()
	} else {
		res := c.caller.DoMultiMoving(ctx, maxSize, get, b.Pttl().Key(key).Build())
		s, ttl, err = withPTTL(res[0], res[1])
	}
	raw, err = c.l2Outcome(gc, s, err, limit)
	return raw, ttl, err
}

// getrange is the read of an envelope under limit (see l2Get).
func getrange(b rueidis.Builder, key string, limit int64) rueidis.Completed {
	return b.Getrange().Key(key).Start(0).End(limit).Build()
}

// withPTTL is the value and TTL of a GETRANGE's and PTTL's results: a key gone between the two
// commands is a miss ("").
func withPTTL(get, pttl rueidis.RedisResult) (string, time.Duration, error) {
	s, err := get.ToString()
	if err != nil {
		return "", -1, err
	}
	ms, err := pttl.AsInt64()
	if err != nil {
		return "", -1, err
	}
	if ms == -2 {
		s = ""
	}
	return s, time.Duration(ms) * time.Millisecond, nil
}

// l2Outcome counts and classifies one value read by l2Get or l2GetMany: s read with a limit
// of limit bytes, or err.
func (c *Cache) l2Outcome(gc *groupCounters, s string, err error, limit int64) ([]byte, error) {
	switch {
	case err != nil:
		c.st.l2Errors.Add(1)
		gc.l2Errors.Add(1)
		return nil, err
	case s == "":
		c.st.l2Misses.Add(1)
		gc.l2Misses.Add(1)
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

// errOversize is l2Get's answer for a value larger than the group's MaxValueBytes.
var errOversize = notFound("larger than the group's MaxValueBytes")

// l2Set stores an envelope through w: the cache's caller, or ownCaller (see ownWriter). h is
// the key's L1 hash. With ifAbsent (SET NX) it is stored only if Redis holds nothing for the
// key, and stored reports whether it was: a load that read nothing stores so, and a write
// made since its read stands (see groupCore.store).
func (c *Cache) l2Set(ctx context.Context, w *rcall.Caller, key string, h uint64, value []byte, ttl time.Duration, ifAbsent bool) (stored bool, err error) {
	res, settled := w.DoMovingSettled(ctx, setCmd(w.B(), key, value, ttl, ifAbsent), int64(len(value)))
	if err := res.Error(); err != nil {
		if rueidis.IsRedisNil(err) { // SET NX: the key exists
			return false, nil
		}
		c.st.l2Errors.Add(1)
		c.unsettledWrite(w, settled, h)
		return false, err
	}
	return true, nil
}

// setCmd is the SET of an envelope (see l2Set).
func setCmd(b rueidis.Builder, key string, value []byte, ttl time.Duration, ifAbsent bool) rueidis.Completed {
	px := max(ttl.Milliseconds(), 1)
	if ifAbsent {
		return b.Set().Key(key).Value(rueidis.BinaryString(value)).Nx().PxMilliseconds(px).Build()
	}
	return b.Set().Key(key).Value(rueidis.BinaryString(value)).PxMilliseconds(px).Build()
}

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
