// Package deadline bounds Redis calls by a timeout without a timer per call.
//
// context.WithTimeout costs five allocations and a runtime timer that is started and
// stopped on every call; on a busy instance that is a measurable share of a pipelined Redis
// round trip. A Bounds instead hands every call that starts within one short window the same
// shared context, whose deadline is the window's end plus the timeout: one context and one
// timer per window (at most 1/Granularity per second while calls flow, none when idle), and
// each call gets at least its full timeout and at most one window more.
//
// Only a parent that can never be cancelled (Done returns nil: context.Background,
// context.WithoutCancel, value-only contexts) can share: a cancellable parent gets its own
// context.WithTimeout, so that cancelling it still ends the call at once. A parent whose own
// deadline comes no later than the timeout is used as it is.
package deadline

import (
	"context"
	"sync/atomic"
	"time"
)

// Bounds gives calls a deadline of at least Timeout. The zero value and a nil *Bounds add
// no deadline.
type Bounds struct {
	timeout time.Duration
	window  time.Duration
	cur     atomic.Pointer[shared]
}

// shared is the context of one window.
type shared struct {
	ctx    context.Context
	cancel context.CancelFunc // kept for vet; the deadline cancels it
	until  time.Time          // calls starting before this may use ctx
}

// Window bounds: a window is Timeout/16, between MinWindow and MaxWindow.
const (
	MinWindow = 100 * time.Microsecond
	MaxWindow = time.Millisecond
)

// New returns Bounds for timeout; timeout <= 0 means no deadline.
func New(timeout time.Duration) *Bounds {
	b := &Bounds{timeout: max(timeout, 0)}
	b.window = min(max(timeout/16, MinWindow), MaxWindow)
	return b
}

// Timeout is the least time a call gets.
func (b *Bounds) Timeout() time.Duration {
	if b == nil {
		return 0
	}
	return b.timeout
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
	if parent.Done() != nil {
		return context.WithTimeout(parent, b.timeout)
	}
	s := b.cur.Load()
	if s == nil || !now.Before(s.until) {
		s = b.renew(s, now)
	}
	if parent == context.Background() || parent == context.TODO() {
		return s.ctx, noop
	}
	return valueCtx{Context: s.ctx, values: parent}, noop
}

// renew replaces the expired window old with one starting at now, unless another call
// already did.
func (b *Bounds) renew(old *shared, now time.Time) *shared {
	until := now.Add(b.window)
	ctx, cancel := context.WithDeadline(context.Background(), until.Add(b.timeout))
	s := &shared{ctx: ctx, cancel: cancel, until: until}
	if b.cur.CompareAndSwap(old, s) {
		return s
	}
	if cur := b.cur.Load(); now.Before(cur.until) {
		cancel()
		return cur
	}
	return s // another window, already over, won the race: this one serves the call alone
}

// valueCtx is a shared window's deadline with the caller's values (trace spans, hooks'
// data), for a parent that carries values but cannot be cancelled.
type valueCtx struct {
	context.Context                 // the window: Deadline, Done, Err
	values          context.Context // the parent: Value
}

func (c valueCtx) Value(key any) any { return c.values.Value(key) }

func noop() {}
