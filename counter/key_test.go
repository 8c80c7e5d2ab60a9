package counter

import (
	"errors"
	"strings"
	"testing"
)

func TestRedisKey(t *testing.T) {
	tests := []struct {
		name string
		key  Key
		want string
	}{
		{"original form", Key{"article", "123", "likes"}, "synspirit:count:article:123:likes"},
		{"plain bytes unchanged", Key{"user_profile", "a-b.C_9", "views.total"}, "synspirit:count:user_profile:a-b.C_9:views.total"},
		{"colon in ID", Key{"article", "1:2", "likes"}, "synspirit:count:article:1%3A2:likes"},
		{"percent escaped", Key{"article", "1%3A2", "likes"}, "synspirit:count:article:1%253A2:likes"},
		{"hash tag braces", Key{"article", "{x}", "likes"}, "synspirit:count:article:%7Bx%7D:likes"},
		{"space and slash", Key{"a b", "x/y", "c"}, "synspirit:count:a%20b:x%2Fy:c"},
		{"non-ASCII", Key{"article", "é", "likes"}, "synspirit:count:article:%C3%A9:likes"},
		{"control and invalid UTF-8", Key{"t", "\x00\n\xff", "c"}, "synspirit:count:t:%00%0A%FF:c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := redisKey("synspirit:", tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("redisKey(%#v) = %q, want %q", tt.key, got, tt.want)
			}
			back, err := parseRedisKey("synspirit:", got)
			if err != nil || back != tt.key {
				t.Fatalf("parseRedisKey(%q) = %#v, %v; want %#v", got, back, err, tt.key)
			}
		})
	}
}

func TestRedisKeyEmptyPart(t *testing.T) {
	for _, k := range []Key{{}, {"", "1", "likes"}, {"article", "", "likes"}, {"article", "1", ""}} {
		if _, err := redisKey("", k); !errors.Is(err, ErrBadKey) {
			t.Errorf("redisKey(%#v) error = %v, want ErrBadKey", k, err)
		}
	}
}

// Keys that a plain ':' join would map to one Redis key must map to different ones.
func TestRedisKeyInjective(t *testing.T) {
	groups := [][]Key{
		{{"a", "b:c", "d"}, {"a:b", "c", "d"}, {"a", "b", "c:d"}},
		{{"a", "x:y", "c"}, {"a", "x%3Ay", "c"}, {"a", "x%253Ay", "c"}},
		{{"a", "%", "c"}, {"a", "%25", "c"}},
		{{"a", "é", "c"}, {"a", "%C3%A9", "c"}, {"a", "\xc3\xa9", "c"}},
	}
	seen := map[string]Key{}
	for _, g := range groups {
		for _, k := range g {
			rk, err := redisKey("p:", k)
			if err != nil {
				t.Fatal(err)
			}
			if prev, dup := seen[rk]; dup && prev != k {
				t.Fatalf("%#v and %#v both map to %q", prev, k, rk)
			}
			seen[rk] = k
			if n := strings.Count(strings.TrimPrefix(rk, "p:count:"), ":"); n != 2 {
				t.Fatalf("%q has %d separators after the namespace, want 2", rk, n)
			}
		}
	}
}

func TestParseRedisKeyRejectsNonCanonical(t *testing.T) {
	for _, s := range []string{
		"p:count:a:b",         // two parts
		"p:count:a:b:c:d",     // four parts
		"p:count:a::c",        // empty part
		"p:count:a:%41:c",     // escape of a plain byte
		"p:count:a:%3a:c",     // lower-case hex
		"p:count:a:%3:c",      // truncated escape
		"p:count:a:b c:c",     // unescaped space
		"q:count:article:1:x", // wrong prefix
	} {
		if k, err := parseRedisKey("p:", s); err == nil {
			t.Errorf("parseRedisKey(%q) = %#v, want an error", s, k)
		}
	}
}

// FuzzKey checks that every key maps to a Redis key that parses back to it — so the mapping is
// injective — that plain parts are unchanged and that empty parts are rejected.
func FuzzKey(f *testing.F) {
	f.Add("article", "123", "likes")
	f.Add("article", "1:2", "likes")
	f.Add("a:b", "c", "d")
	f.Add("x", "%3A", "y")
	f.Add("", "1", "likes")
	f.Add("{tag}", "é", "\x00")
	f.Fuzz(func(t *testing.T, target, id, counter string) {
		k := Key{target, id, counter}
		rk, err := redisKey("pre:", k)
		if target == "" || id == "" || counter == "" {
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("redisKey(%#v) error = %v, want ErrBadKey", k, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("redisKey(%#v): %v", k, err)
		}
		back, err := parseRedisKey("pre:", rk)
		if err != nil || back != k {
			t.Fatalf("parseRedisKey(%q) = %#v, %v; want %#v", rk, back, err, k)
		}
		if rk != "pre:"+namespace+k.String() {
			t.Fatalf("redisKey %q and String %q disagree", rk, k.String())
		}
		for _, p := range []string{target, id, counter} {
			if isPlain(p) && !strings.Contains(rk, p) {
				t.Fatalf("plain part %q changed in %q", p, rk)
			}
		}
	})
}

func isPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
			return false
		}
	}
	return true
}
