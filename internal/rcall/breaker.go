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

// Breaker stops paying a Redis timeout per call during an outage. It opens after Threshold
// consecutive failures spread over at least MinSpan, lets one probe through after Cooldown,
// and closes on the probe's success. The span keeps one dropped connection, which fails
// every call in flight on it at the same moment, from looking like an outage: the calls
// after it succeed on the new connection. It is lock-free: the hot path is one atomic load.
// A nil *Breaker lets every call through.
type Breaker struct {
	threshold int64
	minSpan   int64 // nanoseconds
	cooldown  time.Duration
	onOpen    func() // called once per transition to open
	onClose   func() // called once per transition back to closed

	state     atomic.Int32 // State
	failures  atomic.Int64 // consecutive failures while closed
	firstFail atomic.Int64 // unix nanos of the first of them; 0 when there are none
	openedAt  atomic.Int64 // unix nanos of the last opening
	opens     atomic.Uint64
}

// BreakerOptions configure a Breaker.
type BreakerOptions struct {
	Threshold int           // consecutive failures that open it (at least 1)
	MinSpan   time.Duration // the shortest time those failures must span
	Cooldown  time.Duration // how long it stays open before a probe
	// OnOpen and OnClose (either may be nil) run on the goroutine of the call that made the
	// transition: they must not block.
	OnOpen, OnClose func()
}

// DefaultMinFailureSpan is what tiercache gives BreakerOptions.MinSpan: a dropped
// connection's calls all fail within a millisecond or two, an outage's go on failing.
const DefaultMinFailureSpan = 10 * time.Millisecond

// NewBreaker returns a closed breaker.
func NewBreaker(o BreakerOptions) *Breaker {
	return &Breaker{threshold: int64(max(o.Threshold, 1)), minSpan: int64(o.MinSpan), cooldown: o.Cooldown, onOpen: o.OnOpen, onClose: o.OnClose}
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
		b.firstFail.Store(0)
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
	now := time.Now().UnixNano()
	n := b.failures.Add(1)
	if n == 1 {
		b.firstFail.CompareAndSwap(0, now)
	}
	first := b.firstFail.Load()
	if n < b.threshold || first == 0 || now-first < b.minSpan || State(b.state.Load()) != Closed {
		return
	}
	// Only the transition moves openedAt: failures of calls that were in flight when the
	// breaker opened must not stretch its cooldown.
	b.openedAt.Store(now)
	if b.state.CompareAndSwap(int32(Closed), int32(Open)) {
		b.failures.Store(0)
		b.firstFail.Store(0)
		b.opens.Add(1)
		if b.onOpen != nil {
			b.onOpen()
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
