package strhash

import (
	"fmt"
	"hash/maphash"
	"math/bits"
	"strings"
	"testing"
)

// Every byte of a key counts, at every length the hash reads differently (0-3, 4-8, 9-16,
// beyond): changing any one bit of any byte changes the hash, by about half its bits.
func TestEveryBitOfEveryByteCounts(t *testing.T) {
	k := New()
	var flips, sum int
	for n := 1; n <= 80; n++ {
		b := []byte(strings.Repeat("k", n))
		h0 := k.Hash(string(b))
		for i := range b {
			for bit := range 8 {
				b[i] ^= 1 << bit
				h := k.Hash(string(b))
				b[i] ^= 1 << bit
				if h == h0 {
					t.Fatalf("length %d: flipping bit %d of byte %d leaves the hash as it was", n, bit, i)
				}
				flips++
				sum += bits.OnesCount64(h ^ h0)
			}
		}
	}
	if mean := float64(sum) / float64(flips); mean < 30 || mean > 34 {
		t.Fatalf("a one-bit change flips %.1f bits of 64 on average, want about 32", mean)
	}
}

// The length counts too: keys that differ only in trailing zero bytes, or a short key
// padded within its branch, hash apart.
func TestLengthCounts(t *testing.T) {
	k := New()
	seen := map[uint64]int{}
	for n := range 64 {
		h := k.Hash(strings.Repeat("\x00", n))
		if m, ok := seen[h]; ok {
			t.Fatalf("%d and %d zero bytes hash alike", m, n)
		}
		seen[h] = n
	}
}

// Keys shaped like real ones (one counter in a fixed frame, at each length branch) never
// collide in 64 bits, and two secrets give different hashes of the same key. (Pairs built
// against the hash do collide far more often than 2^-64: see the package doc.)
func TestNoCollisionsAmongStructuredKeys(t *testing.T) {
	k1, k2 := New(), New()
	for _, format := range []string{"%d", "a:%06d", "user:%08d:profile", "articles@k3j5h2:%d:comments:page:1"} {
		seen := make(map[uint64]string, 1<<18)
		same := 0
		for i := range 1 << 18 {
			key := fmt.Sprintf(format, i)
			h := k1.Hash(key)
			if prev, ok := seen[h]; ok {
				t.Fatalf("%q and %q collide", prev, key)
			}
			seen[h] = key
			if k2.Hash(key) == h {
				same++
			}
		}
		if same > 0 {
			t.Fatalf("%s: %d keys hash alike under two secrets", format, same)
		}
	}
}

func TestSecretsDiffer(t *testing.T) {
	a, b := New(), New()
	if a == b {
		t.Fatal("two secrets alike")
	}
}

// The hash against hash/maphash's, by key length.
func BenchmarkHash(b *testing.B) {
	k, seed := New(), maphash.MakeSeed()
	for _, n := range []int{3, 8, 16, 24, 40, 100} {
		key := strings.Repeat("k", n)
		b.Run(fmt.Sprintf("strhash/len=%d", n), func(b *testing.B) {
			for b.Loop() {
				k.Hash(key)
			}
		})
		b.Run(fmt.Sprintf("maphash/len=%d", n), func(b *testing.B) {
			for b.Loop() {
				maphash.String(seed, key)
			}
		})
	}
}
