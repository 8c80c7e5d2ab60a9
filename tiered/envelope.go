package tiered

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The L2 value format. Every value the cache writes to Redis starts with a fixed header:
//
//	offset size field
//	0      1    magic 0xC7 ("cache")
//	1      1    format version (1)
//	2      1    flags (bit 0: negative entry; bit 1: tagged; other bits reserved, must be 0)
//	3      1    codec (0 custom, 1 JSON, 2 raw)
//	4      8    logical expiry, Unix milliseconds, big-endian (0: none)
//	12     ...  tagged: the tag section (see tags.go: each tag's name and recorded version)
//	...    ...  payload
//
// A value that does not start with this header — written by something else, truncated, or
// from a future format — is treated as a miss, logged and counted, never decoded further.
const (
	envelopeMagic      = 0xC7
	envelopeVersion    = 1
	envelopeHeaderSize = 12

	flagNegative byte = 1 << 0
	flagTagged   byte = 1 << 1
	knownFlags        = flagNegative | flagTagged
)

var errForeignValue = errors.New("tiered: value in Redis is not a tiercache envelope")

type envelope struct {
	flags    byte
	codec    byte
	expiryMs int64
	tags     []byte // the tag section, nil if untagged
	payload  []byte
}

// appendEnvelope writes the header, the tag section (tags, if not nil) and then payload into
// dst.
func appendEnvelope(dst []byte, flags, codec byte, expiryMs int64, tags, payload []byte) []byte {
	if tags != nil {
		flags |= flagTagged
	}
	dst = append(dst, envelopeMagic, envelopeVersion, flags, codec)
	dst = binary.BigEndian.AppendUint64(dst, uint64(expiryMs))
	dst = append(dst, tags...)
	return append(dst, payload...)
}

// decodeEnvelope parses b without copying: the payload aliases b.
func decodeEnvelope(b []byte) (envelope, error) {
	if len(b) < envelopeHeaderSize || b[0] != envelopeMagic {
		return envelope{}, errForeignValue
	}
	if b[1] != envelopeVersion {
		return envelope{}, fmt.Errorf("%w: format version %d", errForeignValue, b[1])
	}
	if b[2]&^knownFlags != 0 {
		return envelope{}, fmt.Errorf("%w: unknown flags %#x", errForeignValue, b[2])
	}
	env := envelope{
		flags:    b[2],
		codec:    b[3],
		expiryMs: int64(binary.BigEndian.Uint64(b[4:12])),
		payload:  b[envelopeHeaderSize:],
	}
	if env.flags&flagTagged != 0 {
		n, err := splitTagSection(env.payload)
		if err != nil {
			return envelope{}, fmt.Errorf("%w: %v", errForeignValue, err)
		}
		env.tags, env.payload = env.payload[:n:n], env.payload[n:]
	}
	return env, nil
}
