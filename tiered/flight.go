package tiered

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// flight deduplicates concurrent loads of one key, like x/sync/singleflight, with two
// differences a cache needs: a waiter whose context ends stops waiting without cancelling
// the others, and the load's own context is cancelled only when every waiter has given up.
// A panic in the load is handed to every waiter as an error.
type flight struct {
	mu     sync.Mutex // protects calls
	calls  map[string]*call
	joined atomic.Uint64 // callers that joined a load already in flight
}

type call struct {
	done    chan struct{} // closed when val and err are set
	val     any
	err     error
	waiters int // guarded by flight.mu
	cancel  context.CancelFunc
}

// PanicError is the error every waiter of a load gets when the load panicked.
type PanicError struct {
	Value any    // what the loader panicked with
	Stack []byte // the loader goroutine's stack at the panic
}

func (p *PanicError) Error() string {
	return fmt.Sprintf("tiered: loader panicked: %v\n\n%s", p.Value, p.Stack)
}

// do runs fn once for all concurrent callers with the same key. fn runs on its own
// goroutine (started by spawn, which Close waits for) with a context that keeps ctx's values
// and ends when all waiters are gone or closeCtx ends. If spawn refuses (the cache is
// closing), fn runs on the caller's goroutine.
func (f *flight) do(ctx, closeCtx context.Context, spawn func(func()) bool, key string, fn func(context.Context) (any, error)) (any, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = make(map[string]*call)
	}
	c, ok := f.calls[key]
	if ok {
		c.waiters++
		f.mu.Unlock()
		f.joined.Add(1)
	} else {
		lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		stop := context.AfterFunc(closeCtx, cancel)
		c = &call{done: make(chan struct{}), waiters: 1, cancel: cancel}
		f.calls[key] = c
		f.mu.Unlock()
		run := func() {
			defer stop()
			defer cancel()
			defer func() {
				if r := recover(); r != nil {
					c.err = &PanicError{Value: r, Stack: debug.Stack()}
				}
				f.mu.Lock()
				if f.calls[key] == c {
					delete(f.calls, key)
				}
				f.mu.Unlock()
				close(c.done)
			}()
			c.val, c.err = fn(lctx)
		}
		if !spawn(run) {
			run()
		}
	}
	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		f.mu.Lock()
		c.waiters--
		if c.waiters == 0 {
			// Nobody wants this result any more: stop the load, and let the next caller
			// start a fresh one instead of joining a cancelled one.
			c.cancel()
			if f.calls[key] == c {
				delete(f.calls, key)
			}
		}
		f.mu.Unlock()
		return nil, ctx.Err()
	}
}
