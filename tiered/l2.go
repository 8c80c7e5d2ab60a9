package tiered

import (
	"context"
	"time"
	"unsafe"

	"github.com/redis/rueidis"
)

// The L2 tier: reads and writes of envelopes in Redis, through the cache's Caller (deadline,
// breaker, error classification: internal/rcall).

// l2Get reads the envelope of a value of at most maxSize bytes (the group's limit), and the
// TTL Redis holds for it, in one round trip. It reads with GETRANGE rather than GET, so that
// a larger value (written by an instance whose group allows more, or by anything else) is
// never moved whole: one byte past the limit says it is too large, and it is a miss. Its
// outcome is counted in the cache's counters and the group's, gc. A
// missing key reads as "" (no envelope is empty). The TTL is whatever Redis holds now, whoever
// set it (EXPIRE, PEXPIRE, PERSIST from another client): an L1 entry never outlives it. ttl <
// 0 means none. The bytes are a view of the reply's memory: decode them, do not keep them.
func (c *Cache) l2Get(ctx context.Context, gc *groupCounters, key string, maxSize int64) (raw []byte, ttl time.Duration, err error) {
	limit := envelopeHeaderSize + maxSize // the last byte index read is limit: one too many
	b := c.caller.B()
	res := c.caller.DoMultiMoving(ctx, maxSize, b.Getrange().Key(key).Start(0).End(limit).Build(), b.Pttl().Key(key).Build())
	s, err := res[0].ToString()
	if err == nil {
		var ms int64
		if ms, err = res[1].AsInt64(); err == nil {
			ttl = time.Duration(ms) * time.Millisecond
			if ms == -2 { // gone between the two commands: a miss
				s = ""
			}
		}
	}
	switch {
	case err != nil:
		c.st.l2Errors.Add(1)
		gc.l2Errors.Add(1)
		return nil, 0, err
	case s == "":
		c.st.l2Misses.Add(1)
		gc.l2Misses.Add(1)
		return nil, 0, ErrNotFound
	case int64(len(s)) > limit:
		c.st.l2Misses.Add(1)
		gc.l2Misses.Add(1)
		c.st.tooLarge.Add(1)
		return nil, 0, errOversize
	}
	c.st.l2Hits.Add(1)
	gc.l2Hits.Add(1)
	return unsafe.Slice(unsafe.StringData(s), len(s)), ttl, nil
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
