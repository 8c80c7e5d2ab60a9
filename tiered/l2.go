package tiered

import (
	"context"
	"time"
	"unsafe"

	"github.com/redis/rueidis"
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

func (c *Cache) l2Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	cmd := c.caller.B().Set().Key(key).Value(rueidis.BinaryString(value)).PxMilliseconds(max(ttl.Milliseconds(), 1)).Build()
	if err := c.caller.DoMoving(ctx, cmd, int64(len(value))).Error(); err != nil {
		c.st.l2Errors.Add(1)
		return err
	}
	return nil
}
