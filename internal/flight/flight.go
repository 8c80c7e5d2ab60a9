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
	"time"

	"github.com/synspirit/tiercache/internal/deadline"
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
	done     chan struct{}
	val      V
	err      error
	waiters  int                // guarded by Group.mu
	cancel   context.CancelFunc // ends the load's context
	fallback atomic.Pointer[V]  // offered by the load (Offer), for callers past a timeout
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
//
// fn's context carries ctx's values and ends when every caller has left or the Lifetime
// closes. When ctx cannot end (Done is nil) it is the Lifetime's own context, which does not
// end when fn returns: fn runs user code (a loader) under UserContext.
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
	if ctx.Done() == nil {
		// The first caller can never leave (its context cannot end), so the load is never
		// cancelled for want of waiters: the caller runs it itself, saving a goroutine
		// hand-off, under the lifetime's context (ended by Close, which waits for it) with the
		// caller's values, and no context of its own; Redis calls under it share their
		// deadlines (deadline.NewWithin). Others may still join, and leave. That context does
		// not end with the load: user code gets UserContext.
		c.cancel = func() {}
		g.calls[key] = c
		g.mu.Unlock()
		if g.life.Enter() {
			defer g.life.Leave()
			g.run(deadline.WithValues(g.life.Context(), ctx), key, c, fn)
		} else {
			g.run(ctx, key, c, fn) // closed: as below
		}
		return c.val, c.err
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(g.life.Context(), cancel)
	c.cancel = cancel
	g.calls[key] = c
	g.mu.Unlock()
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

// UserContext is the context for user code (a loader) that a load runs: ctx's values and
// cancellation, ended by the returned cancel when that code returns, so that what it attaches
// to its context (an AfterFunc, a child, a goroutine waiting on Done) ends with it, also under
// an inline load's context, the Lifetime's, which may never end.
func UserContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}

// Forget makes the next caller of key start a new load instead of joining the one in flight
// (whose callers still get its result): for a write that makes the result of a load begun
// before it out of date.
func (g *Group[V]) Forget(key string) {
	g.mu.Lock()
	delete(g.calls, key)
	g.mu.Unlock()
}

// ErrMissing is the error of a key that a batch load (DoMany) did not return.
var ErrMissing = errors.New("not returned by the batch load")

// DoMany is Do for many keys at once: the keys that no load is in flight for are loaded
// together, by one call of fn (which returns the values it has; a key it leaves out gets
// ErrMissing), and the others join the loads in flight. Loads of single keys (Do) join a
// batch's keys as they would a single load. The batch's context keeps ctx's values and ends
// when no caller waits for any of its keys any more, or on Close. The results are the values
// found, and the errors of the keys that have none (ctx's error for those not done when ctx
// ended).
func (g *Group[V]) DoMany(ctx context.Context, keys []string, fn func(context.Context, []string) (map[string]V, error)) (map[string]V, map[string]error) {
	vals := make(map[string]V, len(keys))
	errs := map[string]error{}
	if err := ctx.Err(); err != nil {
		for _, k := range keys {
			errs[k] = err
		}
		return vals, errs
	}
	calls := make(map[string]*call[V], len(keys))
	var led []string
	b := &batch{}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	abandon := func() {
		if b.waiting.Add(-1) == 0 {
			cancel()
		}
	}
	g.mu.Lock()
	for _, k := range keys {
		if _, dup := calls[k]; dup {
			continue
		}
		if c, ok := g.calls[k]; ok {
			c.waiters++
			calls[k] = c
			g.joined.Add(1)
			continue
		}
		c := &call[V]{done: make(chan struct{}), waiters: 1, cancel: abandon}
		g.calls[k] = c
		calls[k] = c
		led = append(led, k)
	}
	b.waiting.Store(int64(len(led)))
	g.mu.Unlock()

	if len(led) == 0 {
		cancel()
	} else {
		stop := context.AfterFunc(g.life.Context(), cancel)
		runBatch := func(ctx context.Context) {
			defer stop()
			defer cancel()
			g.runBatch(ctx, led, calls, fn)
		}
		switch {
		case ctx.Done() == nil && g.life.Enter():
			func() { defer g.life.Leave(); runBatch(lctx) }()
		case g.life.Go(func() { runBatch(lctx) }):
		default:
			runBatch(ctx) // closed: on the caller's goroutine, under its context
		}
	}
	for k, c := range calls {
		v, err := g.wait(ctx, k, c)
		if err != nil {
			errs[k] = err
			continue
		}
		vals[k] = v
	}
	return vals, errs
}

// batch is the shared state of one DoMany load.
type batch struct {
	waiting atomic.Int64 // its keys that some caller still waits for
}

// runBatch runs fn for keys, whose calls the caller leads, and completes each of them.
func (g *Group[V]) runBatch(ctx context.Context, keys []string, calls map[string]*call[V], fn func(context.Context, []string) (map[string]V, error)) {
	var vals map[string]V
	var err error
	returned := false
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		} else if !returned {
			err = ErrGoexit
		}
		g.mu.Lock()
		for _, k := range keys {
			c := calls[k]
			switch v, ok := vals[k]; {
			case err != nil:
				c.err = err
			case ok:
				c.val = v
			default:
				c.err = ErrMissing
			}
			if g.calls[k] == c {
				delete(g.calls, k)
			}
		}
		g.mu.Unlock()
		for _, k := range keys {
			close(calls[k].done)
		}
	}()
	vals, err = fn(ctx, keys)
	returned = true
}

// ErrTimeout is what a caller of DoWithin gets when the load has not answered within the
// hard timeout and offered no fallback.
var ErrTimeout = errors.New("no answer from the loader within its hard timeout")

// Timeouts bound how long a caller of DoWithin waits for a load.
type Timeouts struct {
	// Soft: past it, a caller takes the load's fallback (see Offer) if it has one, and the
	// load goes on in the background (to refresh what it loads). 0: none.
	Soft time.Duration
	// Hard: past it, a caller takes the fallback if any, else ErrTimeout; the load goes on
	// only if another caller still waits for it. 0: none.
	Hard time.Duration
}

type callKey struct{}

// Offer gives the load running under ctx a fallback value, for its callers that wait past a
// timeout (DoWithin): for a cache, the last value it held. It does nothing outside a load.
func Offer[V any](ctx context.Context, v V) {
	if c, ok := ctx.Value(callKey{}).(*call[V]); ok {
		c.fallback.Store(&v)
	}
}

// DoWithin is Do with timeouts; fellBack reports that the value is the load's fallback.
func (g *Group[V]) DoWithin(ctx context.Context, key string, t Timeouts, fn func(context.Context) (V, error)) (v V, err error, fellBack bool) {
	if t.Soft <= 0 && t.Hard <= 0 {
		v, err = g.Do(ctx, key, fn)
		return v, err, false
	}
	if err := ctx.Err(); err != nil {
		return v, err, false
	}
	g.mu.Lock()
	c, ok := g.calls[key]
	if ok {
		c.waiters++
		g.mu.Unlock()
		g.joined.Add(1)
	} else {
		c = &call[V]{done: make(chan struct{}), waiters: 1}
		lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		lctx = context.WithValue(lctx, callKey{}, c)
		stop := context.AfterFunc(g.life.Context(), cancel)
		c.cancel = cancel
		g.calls[key] = c
		g.mu.Unlock()
		if !g.life.Go(func() { defer stop(); g.run(lctx, key, c, fn) }) {
			stop()
			g.run(context.WithValue(ctx, callKey{}, c), key, c, fn)
			return c.val, c.err, false
		}
	}
	var soft, hard <-chan time.Time
	if t.Soft > 0 {
		st := time.NewTimer(t.Soft)
		defer st.Stop()
		soft = st.C
	}
	if t.Hard > 0 {
		ht := time.NewTimer(t.Hard)
		defer ht.Stop()
		hard = ht.C
	}
	for {
		select {
		case <-c.done:
			return c.val, c.err, false
		case <-ctx.Done():
			v, err = g.wait(ctx, key, c) // leaves, cancelling the load if no one else waits
			return v, err, false
		case <-soft:
			soft = nil
			if fb := c.fallback.Load(); fb != nil {
				g.detach(c)
				return *fb, nil, true
			}
		case <-hard:
			if fb := c.fallback.Load(); fb != nil {
				g.detach(c)
				return *fb, nil, true
			}
			g.leave(key, c)
			var zero V
			return zero, ErrTimeout, false
		}
	}
}

// detach stops waiting for c without cancelling it: the load goes on, and the next caller
// joins it.
func (g *Group[V]) detach(c *call[V]) {
	g.mu.Lock()
	c.waiters--
	g.mu.Unlock()
}

// leave stops waiting for c, cancelling it if no one else waits.
func (g *Group[V]) leave(key string, c *call[V]) {
	g.mu.Lock()
	c.waiters--
	if c.waiters <= 0 {
		c.cancel()
		if g.calls[key] == c {
			delete(g.calls, key)
		}
	}
	g.mu.Unlock()
}
