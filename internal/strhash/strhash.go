// Package strhash is the seeded string hash of the tags of tiercache's L1 entries: modelled on
// wyhash as the Go runtime has it for CPUs without AES (runtime/hash64.go), with a secret of four
// random words.
//
// An L1 lookup hashes its key twice, with independent hashes: the L1's 64-bit key (hash/maphash,
// in the tiered package) and the entry's 32-bit tag (this one). Two maphash.String calls were
// 40% of an L1 hit's time on AMD EPYC: maphash computes its hash with AES behind three calls the
// compiler cannot inline, and this hash is a few multiplications in one function.
//
// It is fast, not strong. Its mix (the 128-bit product of two words, folded) is weak against
// structured differences: a key and the same key with one 8-byte word bit-complemented hash
// alike under about one secret in 2^26 (measured by a review over 2^29 secrets), where an
// ideal 64-bit hash would collide under one in 2^64. That is why it makes only the tag, whose
// 32 bits are weak anyway: the L1 confuses two keys only if their maphash keys collide too.
package strhash

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"unsafe"
)

// Keys is a hash's secret.
type Keys [4]uint64

// New returns a new random secret.
func New() Keys { return Keys{rand.Uint64(), rand.Uint64(), rand.Uint64(), rand.Uint64()} }

// Hash is the 64-bit hash of s under k.
func (k *Keys) Hash(s string) uint64 {
	n := len(s)
	p := unsafe.Slice(unsafe.StringData(s), n) // read only
	seed := k[0]
	var a, b uint64
	switch {
	case n == 0:
	case n < 4:
		a = uint64(p[0])<<16 | uint64(p[n>>1])<<8 | uint64(p[n-1])
	case n <= 8:
		a = uint64(binary.LittleEndian.Uint32(p))
		b = uint64(binary.LittleEndian.Uint32(p[n-4:]))
	case n <= 16:
		a = binary.LittleEndian.Uint64(p)
		b = binary.LittleEndian.Uint64(p[n-8:])
	default:
		for q := p; len(q) > 16; q = q[16:] {
			seed = mix(binary.LittleEndian.Uint64(q)^k[1], binary.LittleEndian.Uint64(q[8:])^seed)
		}
		a = binary.LittleEndian.Uint64(p[n-16:])
		b = binary.LittleEndian.Uint64(p[n-8:])
	}
	return mix(k[2]^uint64(n), mix(a^k[1], b^seed^k[3]))
}

// mix is wyhash's: the 128-bit product of a and b, folded.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}
