package counter

import (
	"errors"
	"fmt"
	"strings"

	"github.com/redis/rueidis"

	"github.com/synspirit/tiercache/internal/sentinel"
	"github.com/synspirit/tiercache/tiered"
)

// Sentinel errors. Match them with errors.Is: the errors returned by this package wrap them
// with the operation and the key ("counter: increment article:7:likes: not found").
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
	// ErrInvalidOptions is returned by every call of Counters built from bad Options (a nil
	// client, a negative TTL), and for a bad argument (a negative Set ttl).
	ErrInvalidOptions = errors.New("counter: invalid options")
	// ErrUnavailable wraps every failure to reach a Redis able to serve, classified as the
	// tiered package does (a timeout, a refused or broken connection, an open circuit
	// breaker, a server that is loading or busy: see tiered.ErrUnavailable). It matches
	// tiered.ErrUnavailable too, so one errors.Is check covers counters and cached data.
	ErrUnavailable error = sentinel.New("counter: redis unavailable", tiered.ErrUnavailable)
	// ErrClosed is returned by Counters built on a tiered.Cache (FromCache, or New on
	// Cache.Redis) once the cache is closed. It matches tiered.ErrClosed too.
	ErrClosed error = sentinel.New("counter: closed", tiered.ErrClosed)
)

// Error codes returned by the Lua scripts (see scripts.go).
const (
	codeNotFound   = "COUNTER_NOTFOUND"
	codeOverflow   = "COUNTER_OVERFLOW"
	codeNotCounter = "COUNTER_NOTCOUNTER"
)

// keyError is a failed operation on one counter, in one message:
// "counter: <op> <key>: <what>[: <detail>]". It matches kind and detail.
type keyError struct {
	op     string
	key    Key
	kind   error // one of the sentinels above, or nil
	detail error // the cause, or nil
}

func (e *keyError) Error() string {
	s := "counter: " + e.op + " " + e.key.String()
	if e.kind != nil {
		s += ": " + strings.TrimPrefix(e.kind.Error(), "counter: ")
	}
	if e.detail != nil {
		s += ": " + e.detail.Error()
	}
	return s
}

func (e *keyError) Unwrap() []error {
	errs := make([]error, 0, 2)
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	if e.detail != nil {
		errs = append(errs, e.detail)
	}
	return errs
}

// classify turns the error of a call (already classified by the Caller: an outage, the
// caller's context, a closed cache, or a Redis answer) into this package's error for
// operation op on key k.
func classify(op string, k Key, err error) error {
	if rueidis.IsRedisNil(err) {
		return &keyError{op: op, key: k, kind: ErrNotFound}
	}
	if re, ok := rueidis.IsRedisErr(err); ok && !errors.Is(err, ErrUnavailable) {
		msg := re.Error()
		switch {
		case strings.HasPrefix(msg, codeNotFound):
			return &keyError{op: op, key: k, kind: ErrNotFound}
		case strings.HasPrefix(msg, codeOverflow):
			return &keyError{op: op, key: k, kind: ErrOverflow}
		case strings.HasPrefix(msg, codeNotCounter):
			return &keyError{op: op, key: k, kind: ErrNotCounter, detail: errors.New(strings.TrimSpace(strings.TrimPrefix(msg, codeNotCounter)))}
		case strings.Contains(msg, "increment or decrement would overflow"): // INCRBY's own
			return &keyError{op: op, key: k, kind: ErrOverflow}
		case strings.HasPrefix(msg, "WRONGTYPE"), strings.Contains(msg, "value is not an integer"):
			return &keyError{op: op, key: k, kind: ErrNotCounter, detail: err}
		}
		return &keyError{op: op, key: k, detail: fmt.Errorf("redis error: %w", err)}
	}
	return &keyError{op: op, key: k, detail: err} // an outage, the caller's context, a closed cache
}

// notCounter reports a reply that Redis returned fine but that is not an int64.
func notCounter(op string, k Key, err error) error {
	return &keyError{op: op, key: k, kind: ErrNotCounter, detail: err}
}
