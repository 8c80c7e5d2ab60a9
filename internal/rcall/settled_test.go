package rcall_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/lifetime"
	"github.com/synspirit/tiercache/internal/rcall"
	"github.com/synspirit/tiercache/internal/redistest"
)

// A call's fate is settled when Redis answered it, or when it was never sent; a call whose
// deadline passed may still be applied (rueidis leaves it queued), and is not.
func TestSettled(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	o := options(stayOpen())
	o.Timeout = 50 * time.Millisecond
	caller := rcall.New(newClient(t, s), o)
	ctx := context.Background()
	one := func(c *rcall.Caller, ctx context.Context) bool {
		_, settled := c.DoMovingSettled(ctx, c.B().Set().Key("k").Value("v").Build(), 0)
		return settled
	}
	many := func(c *rcall.Caller, ctx context.Context) bool {
		_, settled := c.DoMultiMovingSettled(ctx, 0, c.B().Set().Key("k").Value("v").Build(), c.B().Get().Key("none").Build())
		return settled
	}
	for name, call := range map[string]func(*rcall.Caller, context.Context) bool{"Do": one, "DoMulti": many} {
		assert.True(t, call(caller, ctx), "%s: answered (a nil reply included)", name)
		_, settled := caller.DoMovingSettled(ctx, caller.B().Incr().Key("k").Build(), 0)
		assert.True(t, settled, "%s: an error reply is an answer", name)
		done, cancel := context.WithCancel(ctx)
		cancel()
		assert.True(t, call(caller, done), "%s: refused before sending, the caller's context done", name)
		life := lifetime.New()
		closed := rcall.New(newClient(t, s), rcall.Options{Life: life})
		life.Close()
		assert.True(t, call(closed, ctx), "%s: refused before sending, closed", name)
	}
	waitOver := pause(t, s, 300)
	assert.False(t, one(caller, ctx), "Do: no answer within the deadline")
	assert.False(t, many(caller, ctx), "DoMulti: no answer within the deadline")
	waitOver()
	open := rcall.New(newClient(t, s), rcall.Options{Breaker: rcall.NewBreaker(rcall.BreakerOptions{Threshold: 1, Cooldown: time.Hour})})
	s.Stop()
	require.False(t, one(open, ctx), "a refused connection: the breaker's first failure")
	assert.True(t, one(open, ctx), "Do: refused before sending, the breaker open")
	assert.True(t, many(open, ctx), "DoMulti: refused before sending, the breaker open")
}
