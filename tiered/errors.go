package tiered

import (
	"errors"
	"fmt"
	"strings"

	"github.com/synspirit/tiercache/internal/flight"
)

// Sentinel errors. Match them with errors.Is: the errors returned by this package wrap them
// with the operation and key ("tiered: get articles:7: redis unavailable: …").
var (
	// ErrNotFound is returned by Get when the key is in neither tier.
	ErrNotFound = errors.New("tiered: not found")
	// ErrUnavailable wraps every failure to reach a Redis able to serve: a timeout, a
	// refused or broken connection, an open circuit breaker, and the replies LOADING, BUSY,
	// MASTERDOWN, CLUSTERDOWN (the server cannot serve now) and OOM, READONLY, NOREPLICAS,
	// TRYAGAIN (it refuses this command now). The caller's own context ending is not an
	// outage: that error matches context.Canceled or context.DeadlineExceeded instead.
	ErrUnavailable = errors.New("tiered: redis unavailable")
	// ErrClosed is returned by calls on a closed Cache.
	ErrClosed = errors.New("tiered: cache closed")
	// ErrInvalidOptions wraps every error caused by bad Options, a bad group (name, TTL,
	// option, or a name in use with another type or codec) or a bad call option.
	ErrInvalidOptions = errors.New("tiered: invalid options")
	// ErrTooLarge is returned for a value whose encoding is larger than the group's
	// MaxValueBytes; nothing is sent to Redis.
	ErrTooLarge = errors.New("tiered: value too large")
	// ErrLoadTimeout is returned by GetOrLoad when its loader has not answered within the
	// group's WithHardTimeout and no fail-safe value could stand in.
	ErrLoadTimeout = errors.New("tiered: loader timed out")
)

// PanicError is the error every caller of a load gets when the loader panicked
// (errors.As(err, &pe)). Value is what the loader panicked with, Stack the loader
// goroutine's stack at the panic; Error is one line, and Unwrap returns Value when it is an
// error. Counters (package counter) and the image proxy report their loaders' panics with
// the same type.
type PanicError = flight.PanicError

// reasonError is a sentinel with the reason why, in one message: "not found (expired)",
// always the cause of an opError (which names the package).
type reasonError struct {
	sentinel error
	reason   string
}

func (e *reasonError) Error() string {
	return strings.TrimPrefix(e.sentinel.Error(), "tiered: ") + " (" + e.reason + ")"
}
func (e *reasonError) Unwrap() error { return e.sentinel }

func notFound(reason string) error { return &reasonError{sentinel: ErrNotFound, reason: reason} }

// tooLargeError is a value over its group's limit.
type tooLargeError struct{ size, limit int64 }

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("value too large: %d bytes encoded, the limit is %d (MaxValueBytes)", e.size, e.limit)
}
func (e *tooLargeError) Unwrap() error { return ErrTooLarge }

// opError is a failed operation, in one message that names the package once:
// "tiered: get articles:7: redis unavailable: …". A cause that names the package itself
// (a sentinel, a Raw codec error) has that prefix dropped from the text; errors.Is and As see
// the cause unchanged.
type opError struct {
	op    string // what was done: "get", "set", "load"
	where string // on what: "articles:7"; may be empty
	err   error
	bare  bool // no "tiered: " in front: a part of another message
}

func (e *opError) Error() string {
	s := e.op
	if e.where != "" {
		s += " " + e.where
	}
	s += ": " + strings.TrimPrefix(e.err.Error(), "tiered: ")
	if e.bare {
		return s
	}
	return "tiered: " + s
}

func (e *opError) Unwrap() error { return e.err }

// Bad arguments; each matches ErrInvalidOptions.
var (
	errEmptyKey  = &reasonError{sentinel: ErrInvalidOptions, reason: "empty key"}
	errNilLoader = &reasonError{sentinel: ErrInvalidOptions, reason: "nil loader"}
)
