// Package strhash is the seeded string hash of tiercache's L1 keys and tags: wyhash, after the
// Go runtime's own memhash for CPUs without AES (runtime/hash64.go), with a secret of four random
// words.
//
// hash/maphash computes a seeded hash with AES, behind three calls it cannot inline; on an L1
// hit, whose key is hashed twice (the L1's key and the entry's tag, two independent hashes), two
// maphash.String calls were 40% of the hit's time on AMD EPYC, and this hash took 4-5 ns off
// each. With a secret the keys cannot know, no one outside can make two keys collide on
// purpose, and hashes under two secrets drawn apart agree on a pair of keys only by chance
// (TestNoCollisionsAmongStructuredKeys).
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
