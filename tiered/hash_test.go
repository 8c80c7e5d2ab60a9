package tiered

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A value's full Redis key splits back into the base and key its L1 hash was made of.
func TestSplitRedisKey(t *testing.T) {
	for _, tc := range []struct {
		prefix, k, base, key string
		ok                   bool
	}{
		{"p:", "p:articles@3f9z:42", "p:articles@3f9z:", "42", true},
		{"p:", "p:user@1:42:age", "p:user@1:", "42:age", true},
		{"p:", "p:user:42@1:age", "p:user:42@1:", "age", true},
		{"p:", "p:g@1:k@with:colons", "p:g@1:", "k@with:colons", true},
		{"a@b:", "a@b:g@1:k", "a@b:g@1:", "k", true},
		{"", "g@1:", "g@1:", "", true},
		{"p:", "p:count:article:1:likes", "", "", false},
		{"p:", "p:tiercache:gen:articles", "", "", false},
		{"p:", "q:articles@1:k", "", "", false},
		{"p:", "p:@1:k", "", "", false},
		{"p:", "p:g@:k", "", "", false},
	} {
		base, key, ok := splitRedisKey(tc.prefix, tc.k)
		assert.Equal(t, tc.ok, ok, tc.k)
		if ok {
			assert.Equal(t, tc.base, base, tc.k)
			assert.Equal(t, tc.key, key, tc.k)
		}
	}
	hs := newHasher()
	st := newGroupState(hs, "p:", "user", "1")
	base, key, _ := splitRedisKey("p:", st.base+"42:age")
	assert.Equal(t, st.hash("42:age"), hs.key(hs.base(base), key), "a tracking push finds the entry a lookup made")
}

// Keys that spell bases do not collide on purpose: (b1, "b2") and (b2, "b1") hash apart, and a
// key equal to its own group's base is not 0 for every group.
func TestKeysSpellingBasesDoNotCollide(t *testing.T) {
	hs := newHasher()
	a, b := newGroupState(hs, "p:", "a", "0"), newGroupState(hs, "p:", "b", "0")
	assert.NotEqual(t, a.hash(b.base), b.hash(a.base))
	assert.NotEqual(t, a.hash(a.base), b.hash(b.base))
	assert.NotZero(t, a.hash(a.base))
}
