package tiered

// Test-only access to internals.

// EnvelopeForTest encodes payload the way the cache stores a JSON value in Redis.
func EnvelopeForTest(payload []byte, expiryMs int64) []byte {
	return appendEnvelope(nil, 0, codecJSON, expiryMs, payload)
}

// MakeKeyForTest is Group.Key without a group.
func MakeKeyForTest(args ...any) (string, error) { return makeKey(args) }
