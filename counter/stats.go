package counter

import (
	"context"
	"errors"
	"sync/atomic"
)

// Stats is a snapshot of a Counters' calls since New, for monitoring (package
// github.com/synspirit/tiercache/otelmetrics exports them).
type Stats struct {
	Writes     uint64 `json:"writes"`      // counters written: Increment, Decrement, Set, each key of Delete
	Reads      uint64 `json:"reads"`       // counters read: Get, GetOrLoad, each key of GetMany
	Misses     uint64 `json:"misses"`      // reads that found no counter
	Loads      uint64 `json:"loads"`       // GetOrLoad's loader calls
	LoadErrors uint64 `json:"load_errors"` // loader calls that returned an error
	// Errors counts calls that failed for another reason than the caller's: Redis could not
	// be reached or answered with an error, a value was not a counter. Calls the caller's
	// context ended are not counted.
	Errors uint64 `json:"errors"`
}

// stats are Counters' counters, added to after each call (one Redis round trip each).
type stats struct {
	writes, reads, misses atomic.Uint64
	loads, loadErrors     atomic.Uint64
	errors                atomic.Uint64
}

// failed counts err, unless it is the caller's own cancellation or deadline.
func (s *stats) failed(err error) {
	if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		s.errors.Add(1)
	}
}

// Stats returns the counters of c's calls.
func (c *Counters) Stats() Stats {
	return Stats{
		Writes:     c.st.writes.Load(),
		Reads:      c.st.reads.Load(),
		Misses:     c.st.misses.Load(),
		Loads:      c.st.loads.Load(),
		LoadErrors: c.st.loadErrors.Load(),
		Errors:     c.st.errors.Load(),
	}
}
