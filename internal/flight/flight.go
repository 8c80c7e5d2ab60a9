// Package flight deduplicates concurrent loads of one key, the way every package of
// tiercache loads: one home for the rules below.
//
// It differs from golang.org/x/sync/singleflight where a cache needs it to:
//   - a caller whose context ends stops waiting without cancelling the others;
//   - the load's own context keeps the first caller's values and ends when every caller has
//     left, or when the Lifetime that owns the load is closed;
//   - a panic in the load reaches every caller as a *PanicError (never re-panicked on a
//     goroutine of its own, which no caller could recover);
//   - loads run on goroutines the Lifetime owns, except when the first caller's context can
//     never end (context.Background): that caller runs the load itself, under the load's
//     own context, since it could not leave anyway. Once the Lifetime is closed, a load runs
//     on its first caller's goroutine, under that caller's context, and is still shared and
//     still recovered.
package flight

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/synspirit/tiercache/internal/lifetime"
)

// ErrGoexit is what the other callers of a load get when the load called runtime.Goexit.
var ErrGoexit = errors.New("loader called runtime.Goexit")

// PanicError is what every caller of a load gets when the load panicked.
type PanicError struct {
	Value any    // what the load panicked with
	Stack []byte // the stack of the goroutine that panicked, at the panic
}

// Error is one line; the stack is in Stack.
func (p *PanicError) Error() string { return fmt.Sprintf("loader panicked: %v", p.Value) }

// Unwrap returns the panic value when it is an error (a panic(err)), else nil.
func (p *PanicError) Unwrap() error {
	if err, ok := p.Value.(error); ok {
		return err
	}
	return nil
}

// Group deduplicates loads by key. Make it with New.
type Group[V any] struct {
	life *lifetime.Lifetime // owns the loads' goroutines

	mu    sync.Mutex // protects calls and every call's waiters
	calls map[string]*call[V]

	joined atomic.Uint64 // callers that joined a load already in flight
}

// call is one load. val and err are written once, before done is closed, and read only
// after.
type call[V any] struct {
	done    chan struct{}
	val     V
	err     error
	waiters int                // guarded by Group.mu
	cancel  context.CancelFunc // ends the load's context
}

// New returns a Group whose loads are owned by life (which must not be nil).
func New[V any](life *lifetime.Lifetime) *Group[V] {
	return &Group[V]{life: life, calls: make(map[string]*call[V])}
}

// Joined is how many callers joined a load that another caller had started.
func (g *Group[V]) Joined() uint64 { return g.joined.Load() }

// Do returns the result of fn for key, running fn once for all concurrent callers of key.
// A caller whose ctx is already done gets ctx.Err() and starts nothing; one whose ctx ends
// while it waits gets ctx.Err() and leaves the load to the others.
func (g *Group[V]) Do(ctx context.Context, key string, fn func(context.Context) (V, error)) (V, error) {
	var zero V
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	g.mu.Lock()
	c, ok := g.calls[key]
	if ok {
		c.waiters++
		g.mu.Unlock()
		g.joined.Add(1)
		return g.wait(ctx, key, c)
	}
	c = &call[V]{done: make(chan struct{}), waiters: 1}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(g.life.Context(), cancel)
	c.cancel = cancel
	g.calls[key] = c
	g.mu.Unlock()
	if ctx.Done() == nil && g.life.Enter() {
		// The first caller can never leave (its context cannot end): it runs the load itself,
		// saving a goroutine hand-off, under the load's own context (ended by Close, which
		// waits for it). Others may still join, and leave.
		defer g.life.Leave()
		defer stop()
		g.run(lctx, key, c, fn)
		return c.val, c.err
	}
	if g.life.Go(func() { defer stop(); g.run(lctx, key, c, fn) }) {
		return g.wait(ctx, key, c)
	}
	// Closed: the caller runs the load itself, under its own context (the closed
	// Lifetime's would end it at once). Others may still join it.
	stop()
	g.run(ctx, key, c, fn)
	return c.val, c.err
}

func (g *Group[V]) run(ctx context.Context, key string, c *call[V], fn func(context.Context) (V, error)) {
	returned := false
	defer func() {
		if r := recover(); r != nil {
			var zero V
			c.val, c.err = zero, &PanicError{Value: r, Stack: debug.Stack()}
		} else if !returned {
			var zero V
			c.val, c.err = zero, ErrGoexit // a zero value with a nil error would look like a result
		}
		g.mu.Lock()
		if g.calls[key] == c {
			delete(g.calls, key)
		}
		g.mu.Unlock()
		c.cancel()
		close(c.done)
	}()
	c.val, c.err = fn(ctx)
	returned = true
}

func (g *Group[V]) wait(ctx context.Context, key string, c *call[V]) (V, error) {
	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
	}
	select {
	case <-c.done: // finished as the caller gave up: the result is there
		return c.val, c.err
	default:
	}
	g.mu.Lock()
	c.waiters--
	if c.waiters == 0 {
		// Nobody wants this result any more: stop the load, and let the next caller start
		// a fresh one rather than join a cancelled one.
		c.cancel()
		if g.calls[key] == c {
			delete(g.calls, key)
		}
	}
	g.mu.Unlock()
	var zero V
	return zero, ctx.Err()
}

// Forget makes the next caller of key start a new load instead of joining the one in flight
// (whose callers still get its result): for a write that makes the result of a load begun
// before it out of date.
func (g *Group[V]) Forget(key string) {
	g.mu.Lock()
	delete(g.calls, key)
	g.mu.Unlock()
}
