package tiered

import (
	"sync/atomic"
	"time"
)

// BreakerState is the state of the circuit breaker in front of Redis.
type BreakerState int32

const (
	// BreakerClosed: calls go to Redis.
	BreakerClosed BreakerState = iota
	// BreakerOpen: calls fail at once with ErrUnavailable, without waiting on Redis.
	BreakerOpen
	// BreakerHalfOpen: one probe call is in flight; the others fail at once.
	BreakerHalfOpen
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return "unknown"
}

// breaker stops paying a Redis timeout per request during an outage. It opens after
// threshold consecutive failures, lets one probe through after cooldown, and closes on the
// probe's success. It is lock-free: the hot path is one atomic load.
type breaker struct {
	threshold int64
	cooldown  time.Duration
	onOpen    func() // called once per transition to open
	onClose   func() // called once per transition back to closed

	state    atomic.Int32 // BreakerState
	failures atomic.Int64 // consecutive failures while closed
	openedAt atomic.Int64 // unix nanos of the last opening
	opens    atomic.Uint64
}

// allow reports whether a call may go to Redis now. It returns probe=true for the single
// call that tests a half-open breaker; that call must report its outcome.
func (b *breaker) allow() (ok, probe bool) {
	switch BreakerState(b.state.Load()) {
	case BreakerClosed:
		return true, false
	case BreakerOpen:
		if time.Since(time.Unix(0, b.openedAt.Load())) < b.cooldown {
			return false, false
		}
		if b.state.CompareAndSwap(int32(BreakerOpen), int32(BreakerHalfOpen)) {
			return true, true
		}
	}
	return false, false
}

func (b *breaker) success(probe bool) {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
	if probe && b.state.CompareAndSwap(int32(BreakerHalfOpen), int32(BreakerClosed)) && b.onClose != nil {
		b.onClose()
	}
}

func (b *breaker) failure(probe bool) {
	if probe {
		b.openedAt.Store(time.Now().UnixNano())
		b.state.Store(int32(BreakerOpen))
		return
	}
	if b.failures.Add(1) >= b.threshold {
		b.openedAt.Store(time.Now().UnixNano())
		if b.state.CompareAndSwap(int32(BreakerClosed), int32(BreakerOpen)) {
			b.failures.Store(0)
			b.opens.Add(1)
			if b.onOpen != nil {
				b.onOpen()
			}
		}
	}
}

// abandon gives the probe slot back when a probe call ended for a reason that says nothing
// about Redis (the caller's context was cancelled).
func (b *breaker) abandon(probe bool) {
	if probe {
		b.state.CompareAndSwap(int32(BreakerHalfOpen), int32(BreakerOpen))
	}
}

func (b *breaker) State() BreakerState { return BreakerState(b.state.Load()) }
