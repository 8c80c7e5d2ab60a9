package rcall

import (
	"sync/atomic"
	"time"
)

// State is the state of a Breaker.
type State int32

const (
	// Closed: calls go to Redis.
	Closed State = iota
	// Open: calls fail at once, without waiting on Redis.
	Open
	// HalfOpen: one probe call is in flight; the others fail at once.
	HalfOpen
)

// Breaker stops paying a Redis timeout per call during an outage. It opens after
// Threshold consecutive failures, lets one probe through after Cooldown, and closes on the
// probe's success. It is lock-free: the hot path is one atomic load. A nil *Breaker lets
// every call through.
type Breaker struct {
	threshold int64
	cooldown  time.Duration
	onOpen    func() // called once per transition to open
	onClose   func() // called once per transition back to closed

	state    atomic.Int32 // State
	failures atomic.Int64 // consecutive failures while closed
	openedAt atomic.Int64 // unix nanos of the last opening
	opens    atomic.Uint64
}

// NewBreaker returns a closed breaker. onOpen and onClose (either may be nil) run on the
// goroutine of the call that made the transition: they must not block.
func NewBreaker(threshold int, cooldown time.Duration, onOpen, onClose func()) *Breaker {
	return &Breaker{threshold: int64(max(threshold, 1)), cooldown: cooldown, onOpen: onOpen, onClose: onClose}
}

// allow reports whether a call may go to Redis now. It returns probe=true for the single
// call that tests a half-open breaker; that call must report its outcome.
func (b *Breaker) allow() (ok, probe bool) {
	if b == nil {
		return true, false
	}
	switch State(b.state.Load()) {
	case Closed:
		return true, false
	case Open:
		if time.Since(time.Unix(0, b.openedAt.Load())) < b.cooldown {
			return false, false
		}
		if b.state.CompareAndSwap(int32(Open), int32(HalfOpen)) {
			return true, true
		}
	}
	return false, false
}

func (b *Breaker) success(probe bool) {
	if b == nil {
		return
	}
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
	if probe && b.state.CompareAndSwap(int32(HalfOpen), int32(Closed)) && b.onClose != nil {
		b.onClose()
	}
}

func (b *Breaker) failure(probe bool) {
	if b == nil {
		return
	}
	if probe {
		b.openedAt.Store(time.Now().UnixNano())
		b.state.Store(int32(Open))
		return
	}
	if b.failures.Add(1) >= b.threshold {
		b.openedAt.Store(time.Now().UnixNano())
		if b.state.CompareAndSwap(int32(Closed), int32(Open)) {
			b.failures.Store(0)
			b.opens.Add(1)
			if b.onOpen != nil {
				b.onOpen()
			}
		}
	}
}

// abandon gives the probe slot back when a probe call ended for a reason that says nothing
// about Redis (the caller's context ended).
func (b *Breaker) abandon(probe bool) {
	if b != nil && probe {
		b.state.CompareAndSwap(int32(HalfOpen), int32(Open))
	}
}

// State is the breaker's state now.
func (b *Breaker) State() State {
	if b == nil {
		return Closed
	}
	return State(b.state.Load())
}

// Opens is how many times the breaker has opened.
func (b *Breaker) Opens() uint64 {
	if b == nil {
		return 0
	}
	return b.opens.Load()
}
