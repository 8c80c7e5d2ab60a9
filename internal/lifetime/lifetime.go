// Package lifetime gives goroutines an owner that stops them and waits for them.
//
// A Lifetime is what Close means for a cache and everything built on it (loads in
// flight, refreshes, listeners, counters made from the cache): Go starts a goroutine that
// Close waits for, Context ends when Close is called, and Go refuses once it has been.
package lifetime

import (
	"context"
	"sync"
	"sync/atomic"
)

// Lifetime owns goroutines. The zero value is not usable: call New.
type Lifetime struct {
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	closed atomic.Bool // set by Close before it cancels ctx; read on hot paths
	_      [64]byte    // mu is written by every Go: keep it off closed's cache line

	mu sync.RWMutex   // read-held while adding to wg; write-held by Close before it waits
	wg sync.WaitGroup // goroutines started by Go
}

// New returns a Lifetime that is not closed.
func New() *Lifetime {
	l := &Lifetime{}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// Go runs fn on a goroutine that Close waits for, and reports whether it did: after Close
// it does not.
func (l *Lifetime) Go(fn func()) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed.Load() {
		return false
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		fn()
	}()
	return true
}

// Enter counts a piece of work done on the caller's own goroutine as one Close waits for,
// and reports whether it may start (not after Close); each Enter that returns true must be
// followed by Leave.
func (l *Lifetime) Enter() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed.Load() {
		return false
	}
	l.wg.Add(1)
	return true
}

// Leave ends the work Enter started.
func (l *Lifetime) Leave() { l.wg.Done() }

// Context is done once Close has been called.
func (l *Lifetime) Context() context.Context { return l.ctx }

// Done is Context().Done().
func (l *Lifetime) Done() <-chan struct{} { return l.ctx.Done() }

// Closed reports whether Close has been called: one atomic load, for hot paths.
func (l *Lifetime) Closed() bool { return l.closed.Load() }

// Close is Stop then Wait. It is idempotent and safe to call from several goroutines;
// every call waits.
func (l *Lifetime) Close() {
	l.Stop()
	l.Wait()
}

// Stop cancels Context and refuses further Go calls, without waiting.
func (l *Lifetime) Stop() {
	l.mu.Lock()
	l.closed.Store(true)
	l.cancel()
	l.mu.Unlock()
}

// Wait waits for the goroutines started by Go. Call it after Stop.
func (l *Lifetime) Wait() { l.wg.Wait() }
