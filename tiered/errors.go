package tiered

import "errors"

// Sentinel errors. Match them with errors.Is: the errors returned by this package wrap them
// with context.
var (
	// ErrNotFound is returned by Get when the key is in neither tier.
	ErrNotFound = errors.New("tiered: not found")
	// ErrUnavailable wraps every failure to reach Redis: a timeout, a refused or broken
	// connection, or an open circuit breaker.
	ErrUnavailable = errors.New("tiered: redis unavailable")
	// ErrClosed is returned by calls on a closed Cache.
	ErrClosed = errors.New("tiered: cache closed")
	// ErrInvalidOptions wraps every error New returns for bad Options.
	ErrInvalidOptions = errors.New("tiered: invalid options")
)
