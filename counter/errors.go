package counter

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/rueidis"

	"github.com/synspirit/tiercache/tiered"
)

// Sentinel errors. Match them with errors.Is: the errors returned by this package wrap them
// with the operation and the key.
var (
	// ErrNotFound is returned by Increment and Decrement in cache mode (Options.TTL > 0) when
	// the counter does not exist in Redis, typically because it expired: the caller should
	// reload it, e.g. with GetOrLoad.
	ErrNotFound = errors.New("counter: not found")
	// ErrBadKey is returned for a Key with an empty part.
	ErrBadKey = errors.New("counter: bad key")
	// ErrOverflow is returned when an increment or decrement would leave the int64 range; the
	// counter is left unchanged.
	ErrOverflow = errors.New("counter: int64 overflow")
	// ErrNotCounter is returned when the Redis key holds something other than an integer: a
	// value of another type (WRONGTYPE) or a string that is not a 64-bit integer.
	ErrNotCounter = errors.New("counter: redis key holds a value that is not a counter")
	// ErrInvalidOptions is returned by every call of a Counters built by New from bad Options
	// (a nil client, a negative TTL).
	ErrInvalidOptions = errors.New("counter: invalid options")
	// ErrUnavailable wraps every failure to reach Redis: a timeout, a refused or broken
	// connection, a server that is loading or busy. It matches tiered.ErrUnavailable too, so
	// one errors.Is check covers counters and cached data.
	ErrUnavailable error = &wrappedSentinel{msg: "counter: redis unavailable", parent: tiered.ErrUnavailable}
)

// wrappedSentinel is a sentinel with its own message that also matches a parent sentinel.
type wrappedSentinel struct {
	msg    string
	parent error
}

func (e *wrappedSentinel) Error() string { return e.msg }
func (e *wrappedSentinel) Unwrap() error { return e.parent }

// Error codes returned by the Lua scripts (see scripts.go).
const (
	codeNotFound   = "COUNTER_NOTFOUND"
	codeOverflow   = "COUNTER_OVERFLOW"
	codeNotCounter = "COUNTER_NOTCOUNTER"
)

// classify turns an error from rueidis into this package's error for operation op on key k.
// parent is the caller's context: when it is done, the caller gave up, which is reported as
// the context's error rather than as Redis being unavailable.
func classify(parent context.Context, op string, k Key, err error) error {
	if rueidis.IsRedisNil(err) {
		return fmt.Errorf("counter: %s %s: %w", op, k, ErrNotFound)
	}
	if re, ok := rueidis.IsRedisErr(err); ok {
		msg := re.Error()
		switch {
		case strings.HasPrefix(msg, codeNotFound):
			return fmt.Errorf("counter: %s %s: %w", op, k, ErrNotFound)
		case strings.HasPrefix(msg, codeOverflow):
			return fmt.Errorf("counter: %s %s: %w", op, k, ErrOverflow)
		case strings.HasPrefix(msg, codeNotCounter):
			return fmt.Errorf("counter: %s %s: %w: %s", op, k, ErrNotCounter, strings.TrimSpace(strings.TrimPrefix(msg, codeNotCounter)))
		case strings.Contains(msg, "increment or decrement would overflow"): // INCRBY's own
			return fmt.Errorf("counter: %s %s: %w", op, k, ErrOverflow)
		case strings.HasPrefix(msg, "WRONGTYPE"), strings.Contains(msg, "value is not an integer"):
			return fmt.Errorf("counter: %s %s: %w: %w", op, k, ErrNotCounter, err)
		case re.IsLoading(), re.IsTryAgain(), re.IsClusterDown(),
			strings.HasPrefix(msg, "BUSY "), strings.HasPrefix(msg, "MASTERDOWN"):
			// The server answered but cannot serve now: as unreachable as a dead one.
			return fmt.Errorf("counter: %s %s: %w: %w", op, k, ErrUnavailable, err)
		}
		return fmt.Errorf("counter: %s %s: redis error: %w", op, k, err)
	}
	if perr := parent.Err(); perr != nil {
		return fmt.Errorf("counter: %s %s: %w", op, k, perr)
	}
	return fmt.Errorf("counter: %s %s: %w: %w", op, k, ErrUnavailable, err)
}

// notCounter reports a reply that Redis returned fine but that is not an int64.
func notCounter(op string, k Key, err error) error {
	return fmt.Errorf("counter: %s %s: %w: %w", op, k, ErrNotCounter, err)
}
