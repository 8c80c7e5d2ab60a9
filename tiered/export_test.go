package tiered

import (
	"context"
	"time"
)

// Test-only access to internals.

// EnvelopeForTest encodes payload the way the cache stores a JSON value in Redis.
func EnvelopeForTest(payload []byte, expiryMs int64) []byte {
	return appendEnvelope(nil, 0, codecJSON, expiryMs, nil, payload)
}

// SetTrackerPingForTest replaces the tracking keeper's health check with f (nil restores
// it) and wakes the keeper; it reports false when the cache has no tracking listener.
func (c *Cache) SetTrackerPingForTest(f func(context.Context, time.Duration) error) bool {
	if c.tracker == nil {
		return false
	}
	if f == nil {
		c.tracker.pingHook.Store(nil)
	} else {
		c.tracker.pingHook.Store(&f)
	}
	return true
}

// KickTrackerForTest makes the tracking keeper check the listener now.
func (c *Cache) KickTrackerForTest() {
	select {
	case c.tracker.kick <- struct{}{}:
	default:
	}
}

// StarvedChecksForTest is how many of the tracking keeper's slow checks it has put down to
// this process being saturated.
func (c *Cache) StarvedChecksForTest() uint64 { return c.tracker.starved.Load() }

// HearInvalidationsForTest returns once every invalidation Redis sent this cache's tracking
// listener before the call has been applied: it pings every node on the listener's
// connection, whose answer comes after the pushes queued ahead of it. Tests call it after
// their writes, so that a write's own invalidation, still on its way, does not drop from L1
// later an entry the test has just seen there. Without a listener it does nothing.
func (c *Cache) HearInvalidationsForTest(ctx context.Context) error {
	if c.tracker == nil {
		return nil
	}
	return c.tracker.ping(ctx, time.Second)
}

// WaitL1ForTest waits until the L1 fills made so far are applied (ristretto buffers them).
func (c *Cache) WaitL1ForTest() { c.l1.Wait() }

// RefreshingForTest is how many eager refreshes of this instance are running.
func (c *Cache) RefreshingForTest() int {
	n := 0
	c.refreshing.Range(func(any, any) bool { n++; return true })
	return n
}
