package bus

import (
	"encoding/binary"
	"fmt"
)

// Wire format limits. Decode rejects anything beyond them, so a hostile or corrupt payload can
// never make the receiver allocate more than the payload it already holds.
const (
	// MaxMessageSize is the largest payload Decode accepts.
	MaxMessageSize = 1 << 20
	// MaxOriginLen is the longest Origin (instance id) the format carries.
	MaxOriginLen = 255
)

const (
	wireMagic    = "tcb" // "tiercache bus"
	wireVersion1 = 1
	flagFlushAll = 1 << 0
	knownFlags   = flagFlushAll
)

// Encode returns the wire form of m (format version 1):
//
//	"tcb" 0x01 | uvarint len(Origin) Origin | uvarint Seq | flags byte (bit 0: FlushAll)
//	| uvarint len(Keys) | uvarint len(Groups) | each key, then each group: uvarint len, bytes
//
// Encode does not validate m; Decode rejects an empty Origin, one longer than MaxOriginLen, and
// payloads larger than MaxMessageSize.
func Encode(m Message) []byte {
	return appendMessage(make([]byte, 0, encodedSize(m)), m)
}

func encodedSize(m Message) int {
	n := len(wireMagic) + 1 + stringSize(m.Origin) + uvarintSize(m.Seq) + 1 +
		uvarintSize(uint64(len(m.Keys))) + uvarintSize(uint64(len(m.Groups)))
	for _, k := range m.Keys {
		n += stringSize(k)
	}
	for _, g := range m.Groups {
		n += stringSize(g)
	}
	return n
}

func stringSize(s string) int { return uvarintSize(uint64(len(s))) + len(s) }

func uvarintSize(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

func appendMessage(b []byte, m Message) []byte {
	b = append(b, wireMagic...)
	b = append(b, wireVersion1)
	b = appendString(b, m.Origin)
	b = binary.AppendUvarint(b, m.Seq)
	var flags byte
	if m.FlushAll {
		flags |= flagFlushAll
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(m.Keys)))
	b = binary.AppendUvarint(b, uint64(len(m.Groups)))
	for _, k := range m.Keys {
		b = appendString(b, k)
	}
	for _, g := range m.Groups {
		b = appendString(b, g)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Decode parses a payload written by Encode. It never panics; malformed, foreign (other magic
// or version) and oversize payloads return an error wrapping ErrMalformed. Empty Keys and
// Groups decode as nil. The returned strings do not alias p.
func Decode(p []byte) (Message, error) { return decode(p) }

// decode is generic so that the receive path can parse rueidis's string payload without
// copying it: for T = string every key is a substring of the payload.
func decode[T string | []byte](p T) (Message, error) {
	var m Message
	if len(p) > MaxMessageSize {
		return m, fmt.Errorf("%w: %d bytes exceeds the %d byte limit", ErrMalformed, len(p), MaxMessageSize)
	}
	if len(p) < len(wireMagic)+1 || string(p[:len(wireMagic)]) != wireMagic {
		return m, fmt.Errorf("%w: not a bus message", ErrMalformed)
	}
	if v := p[len(wireMagic)]; v != wireVersion1 {
		return m, fmt.Errorf("%w: unsupported format version %d", ErrMalformed, v)
	}
	r := reader[T]{p: p, off: len(wireMagic) + 1}
	origin, ok := r.str()
	if !ok || len(origin) == 0 || len(origin) > MaxOriginLen {
		return m, fmt.Errorf("%w: bad origin", ErrMalformed)
	}
	seq, ok := r.uvarint()
	if !ok {
		return m, fmt.Errorf("%w: bad sequence number", ErrMalformed)
	}
	if r.off >= len(r.p) {
		return m, fmt.Errorf("%w: truncated before flags", ErrMalformed)
	}
	flags := r.p[r.off]
	r.off++
	if flags&^knownFlags != 0 {
		return m, fmt.Errorf("%w: unknown flags %#x", ErrMalformed, flags)
	}
	nKeys, ok1 := r.uvarint()
	nGroups, ok2 := r.uvarint()
	// Every string takes at least one byte (its length), which bounds both counts by what is
	// left and so bounds the slices allocated below.
	if !ok1 || !ok2 || nKeys > uint64(r.remaining()) || nGroups > uint64(r.remaining())-nKeys {
		return m, fmt.Errorf("%w: bad counts", ErrMalformed)
	}
	m.Origin, m.Seq, m.FlushAll = origin, seq, flags&flagFlushAll != 0
	if m.Keys, ok = r.strs(nKeys); !ok {
		return Message{}, fmt.Errorf("%w: truncated key", ErrMalformed)
	}
	if m.Groups, ok = r.strs(nGroups); !ok {
		return Message{}, fmt.Errorf("%w: truncated group", ErrMalformed)
	}
	if r.remaining() != 0 {
		return Message{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, r.remaining())
	}
	return m, nil
}

type reader[T string | []byte] struct {
	p   T
	off int
}

func (r *reader[T]) remaining() int { return len(r.p) - r.off }

func (r *reader[T]) uvarint() (uint64, bool) {
	var x uint64
	var shift uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		if r.off >= len(r.p) {
			return 0, false
		}
		c := r.p[r.off]
		r.off++
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, false // overflows 64 bits
			}
			return x | uint64(c)<<shift, true
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, false
}

func (r *reader[T]) str() (string, bool) {
	n, ok := r.uvarint()
	if !ok || n > uint64(r.remaining()) {
		return "", false
	}
	s := string(r.p[r.off : r.off+int(n)])
	r.off += int(n)
	return s, true
}

func (r *reader[T]) strs(n uint64) ([]string, bool) {
	if n == 0 {
		return nil, true
	}
	out := make([]string, n)
	for i := range out {
		s, ok := r.str()
		if !ok {
			return nil, false
		}
		out[i] = s
	}
	return out, true
}
