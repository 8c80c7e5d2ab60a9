package counter

import (
	"fmt"
	"strings"
)

// namespace follows Options.KeyPrefix in every counter's Redis key, as in the original design's
// "count:article:123:likes".
const namespace = "count:"

// Key names one counter: Target is the kind of thing counted ("article"), ID which one ("123"),
// Counter what is counted ("likes"). Every part must be non-empty. Key is comparable, so it can
// index a map, as GetMany's result does.
type Key struct {
	Target  string
	ID      string
	Counter string
}

// String returns the key's parts, escaped and joined by ':' as they appear in its Redis key
// after the prefix and namespace ("article:123:likes").
func (k Key) String() string {
	var b strings.Builder
	b.Grow(escapedLen(k.Target) + escapedLen(k.ID) + escapedLen(k.Counter) + 2)
	appendParts(&b, k)
	return b.String()
}

// redisKey maps k to its Redis key, prefix + "count:" + target:id:counter.
func redisKey(prefix string, k Key) (string, error) {
	if k.Target == "" || k.ID == "" || k.Counter == "" {
		return "", fmt.Errorf("%w: %q: every part (Target, ID, Counter) must be non-empty", ErrBadKey, k.String())
	}
	var b strings.Builder
	b.Grow(len(prefix) + len(namespace) + escapedLen(k.Target) + escapedLen(k.ID) + escapedLen(k.Counter) + 2)
	b.WriteString(prefix)
	b.WriteString(namespace)
	appendParts(&b, k)
	return b.String(), nil
}

func appendParts(b *strings.Builder, k Key) {
	appendEscaped(b, k.Target)
	b.WriteByte(':')
	appendEscaped(b, k.ID)
	b.WriteByte(':')
	appendEscaped(b, k.Counter)
}

// plain reports whether c appears unescaped in a Redis key. '%' is not plain, which makes the
// escaping injective; ':' is not, which keeps the three parts apart; '{' and '}' are not, so a
// part can never choose a Redis Cluster hash slot.
func plain(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '.' || c == '-'
}

func escapedLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
			n += 2
		}
	}
	return n
}

const upperHex = "0123456789ABCDEF"

func appendEscaped(b *strings.Builder, s string) {
	start := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; !plain(c) {
			b.WriteString(s[start:i])
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&0xF])
			start = i + 1
		}
	}
	b.WriteString(s[start:])
}

// parseRedisKey is the inverse of redisKey: it exists so tests can prove the mapping injective
// by decoding every key it produces.
func parseRedisKey(prefix, s string) (Key, error) {
	rest, ok := strings.CutPrefix(s, prefix+namespace)
	if !ok {
		return Key{}, fmt.Errorf("%w: %q lacks prefix %q", ErrBadKey, s, prefix+namespace)
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 3 {
		return Key{}, fmt.Errorf("%w: %q has %d parts, want 3", ErrBadKey, s, len(parts))
	}
	var dec [3]string
	for i, p := range parts {
		d, err := unescape(p)
		if err != nil {
			return Key{}, fmt.Errorf("%w: %q: %v", ErrBadKey, s, err)
		}
		if d == "" {
			return Key{}, fmt.Errorf("%w: %q has an empty part", ErrBadKey, s)
		}
		dec[i] = d
	}
	return Key{Target: dec[0], ID: dec[1], Counter: dec[2]}, nil
}

// unescape accepts exactly the strings appendEscaped produces: plain bytes and %XX (upper-case
// hex) of non-plain bytes. Anything else is an error, so each Redis key decodes one way only.
func unescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		if c != '%' || i+2 >= len(s) {
			return "", fmt.Errorf("unexpected byte %q at %d", c, i)
		}
		hi, lo := unhex(s[i+1]), unhex(s[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("bad escape %q at %d", s[i:i+3], i)
		}
		d := byte(hi<<4 | lo)
		if plain(d) {
			return "", fmt.Errorf("escape %q of a plain byte at %d", s[i:i+3], i)
		}
		b.WriteByte(d)
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
