// Package deadline bounds Redis calls by a timeout without a timer per call.
//
// context.WithTimeout costs five allocations and a runtime timer that is started and
// stopped on every call; on a busy instance that is a measurable share of a pipelined Redis
// round trip. A Bounds instead hands every call that starts within one window (Timeout/16,
// at least MinWindow) the same shared context, whose deadline is the window's end plus the
// timeout: one context and one timer per window and shard, so about 17 live timers per shard
// while calls flow (each lives until its deadline), and none made while no call comes. Each
// call gets at least its full timeout and at most one window more.
//
// Only a parent that can never be cancelled (Done returns nil: context.Background,
// context.WithoutCancel, value-only contexts), or that is cancelled only with the context the
// Bounds were made within (NewWithin: the owner's lifetime, whose windows end with it), can
// share: any other cancellable parent gets its own context.WithTimeout, so that cancelling it
// still ends the call at once. A parent whose own deadline comes no later than the timeout is
// used as it is.
//
// Calls wait on their context's Done channel; the windows are sharded so that the calls of
// many cores do not all wait on one channel.
package deadline

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"time"
)

// MinWindow is the shortest window: a Timeout under 16×MinWindow gets up to MinWindow more.
const MinWindow = 100 * time.Microsecond

const maxShards = 8

// Bounds gives calls a deadline of at least Timeout. A nil *Bounds adds no deadline.
type Bounds struct {
	timeout time.Duration
	window  time.Duration
	within  context.Context // the windows' parent
	done    <-chan struct{} // within.Done(): a parent cancelled with it alone may share
	shards  []atomic.Pointer[shared]
}

// shared is the context of one window.
type shared struct {
	ctx    context.Context
	cancel context.CancelFunc // kept for vet; the deadline cancels it
	until  time.Time          // calls starting before this may use ctx
}

// New returns Bounds for timeout; timeout <= 0 means no deadline.
func New(timeout time.Duration) *Bounds { return NewWithin(timeout, nil) }

// NewWithin is New whose windows end when within does (nil: never): a call under a parent
// that is cancelled only with within (whose Done is within's: within itself, or WithValues of
// it) shares a window too. within is the owner's lifetime, and the loads it runs are such
// parents.
func NewWithin(timeout time.Duration, within context.Context) *Bounds {
	if timeout <= 0 {
		return &Bounds{}
	}
	if within == nil {
		within = context.Background()
	}
	return &Bounds{
		timeout: timeout,
		window:  max(timeout/16, MinWindow),
		within:  within,
		done:    within.Done(),
		shards:  make([]atomic.Pointer[shared], min(runtime.GOMAXPROCS(0), maxShards)),
	}
}

// Context returns the context for one call under parent, and a function to call when the
// call is over. The call's deadline is parent's when that comes no later than now+Timeout,
// and otherwise falls within [now+Timeout, now+Timeout+window].
func (b *Bounds) Context(parent context.Context) (context.Context, context.CancelFunc) {
	if b == nil || b.timeout == 0 {
		return parent, noop
	}
	now := time.Now()
	if d, ok := parent.Deadline(); ok && !d.After(now.Add(b.timeout)) {
		return parent, noop // the caller's deadline comes first: spare a timer
	}
	if done := parent.Done(); done != nil && done != b.done {
		return context.WithTimeout(parent, b.timeout)
	}
	slot := &b.shards[0]
	if len(b.shards) > 1 {
		slot = &b.shards[rand.Uint32()%uint32(len(b.shards))]
	}
	s := slot.Load()
	if s == nil || !now.Before(s.until) {
		s = b.renew(slot, now)
	}
	if parent == context.Background() || parent == context.TODO() || parent == b.within {
		return s.ctx, noop
	}
	return valueCtx{Context: s.ctx, values: parent}, noop
}

// renew returns a window of slot that is open at now, installing a new one unless another
// call already has.
func (b *Bounds) renew(slot *atomic.Pointer[shared], now time.Time) *shared {
	var s *shared
	for {
		cur := slot.Load()
		if cur != nil && now.Before(cur.until) {
			if s != nil {
				s.cancel()
			}
			return cur // another call renewed it
		}
		if s == nil {
			until := now.Add(b.window)
			ctx, cancel := context.WithDeadline(b.within, until.Add(b.timeout))
			s = &shared{ctx: ctx, cancel: cancel, until: until}
		}
		if slot.CompareAndSwap(cur, s) {
			return s
		}
	}
}

// WithValues returns a context with ctx's deadline and cancellation and values's values
// (ctx's own first): for running work under a lifetime's context with a caller's values.
func WithValues(ctx, values context.Context) context.Context {
	if values == context.Background() || values == context.TODO() {
		return ctx
	}
	return valueCtx{Context: ctx, values: values}
}

// valueCtx is one context's deadline and cancellation with another's values: a shared
// window's with the caller's values (trace spans, hooks' data), for a parent that carries
// values but cannot be cancelled. The first context's own keys (the context package's, which
// find the cancellable context to report Cause and to attach children to) come first: a
// window holds no other values.
type valueCtx struct {
	context.Context                 // the window: Deadline, Done, Err
	values          context.Context // the parent: Value
}

func (c valueCtx) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.values.Value(key)
}

func noop() {}
