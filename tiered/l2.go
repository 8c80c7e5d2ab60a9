package tiered

import (
	"context"
	"time"
	"unsafe"

	"github.com/redis/rueidis"
)

// The L2 tier: reads and writes of envelopes in Redis, through the cache's Caller (deadline,
// breaker, error classification: internal/rcall).

// l2Get reads a raw envelope of at most maxSize bytes (the group's limit, which may lengthen
// the deadline). The bytes are a view of the reply's memory: decode them, do not keep them.
func (c *Cache) l2Get(ctx context.Context, key string, maxSize int64) ([]byte, error) {
	s, err := c.caller.DoMoving(ctx, c.caller.B().Get().Key(key).Build(), maxSize).ToString()
	if err != nil {
		if rueidis.IsRedisNil(err) {
			c.st.l2Misses.Add(1)
			return nil, ErrNotFound
		}
		c.st.l2Errors.Add(1)
		return nil, err
	}
	c.st.l2Hits.Add(1)
	return unsafe.Slice(unsafe.StringData(s), len(s)), nil
}

func (c *Cache) l2Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	cmd := c.caller.B().Set().Key(key).Value(rueidis.BinaryString(value)).PxMilliseconds(max(ttl.Milliseconds(), 1)).Build()
	if err := c.caller.DoMoving(ctx, cmd, int64(len(value))).Error(); err != nil {
		c.st.l2Errors.Add(1)
		return err
	}
	return nil
}
