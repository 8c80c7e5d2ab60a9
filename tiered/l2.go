package tiered

import (
	"context"
	"time"
	"unsafe"

	"github.com/redis/rueidis"
)

// The L2 tier: reads and writes of envelopes in Redis, through the cache's Caller (deadline,
// breaker, error classification: internal/rcall).

// l2Get reads the envelope of a value of at most maxSize bytes (the group's limit). It reads
// with GETRANGE rather than GET, so that a larger value (written by an instance whose group
// allows more, or by anything else) is never moved whole: one byte past the limit says it is
// too large, and it is a miss. A missing key reads as "" (no envelope is empty). The bytes are
// a view of the reply's memory: decode them, do not keep them.
func (c *Cache) l2Get(ctx context.Context, key string, maxSize int64) ([]byte, error) {
	limit := envelopeHeaderSize + maxSize // the last byte index read is limit: one too many
	s, err := c.caller.DoMoving(ctx, c.caller.B().Getrange().Key(key).Start(0).End(limit).Build(), maxSize).ToString()
	switch {
	case err != nil:
		c.st.l2Errors.Add(1)
		return nil, err
	case s == "":
		c.st.l2Misses.Add(1)
		return nil, ErrNotFound
	case int64(len(s)) > limit:
		c.st.l2Misses.Add(1)
		c.st.tooLarge.Add(1)
		return nil, errOversize
	}
	c.st.l2Hits.Add(1)
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
