package tiered

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzEnvelope feeds the L2 decoder arbitrary bytes, as anything else writing under our keys
// could: it must never panic, accept only what the format allows, and round-trip what it
// accepts.
func FuzzEnvelope(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("plain text"))
	f.Add(appendEnvelope(nil, 0, codecJSON, 1700000000000, nil, []byte(`{"id":1}`)))
	f.Add(appendEnvelope(nil, flagNegative, codecRaw, 0, nil, nil))
	f.Add(appendEnvelope(nil, 0, codecJSON, 1, []byte{2, 1, 'a', 2, 'v', '1', 1, 'b', 0}, []byte(`1`)))
	f.Add([]byte{envelopeMagic, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{envelopeMagic, envelopeVersion, 0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		if env.flags&^knownFlags != 0 {
			t.Fatalf("unknown flags %#x accepted", env.flags)
		}
		again := appendEnvelope(nil, env.flags, env.codec, env.expiryMs, env.tags, env.payload)
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip: %x became %x", b, again)
		}
		if env.tags != nil {
			eachTag(env.tags, func(_, _ []byte) {})
		}
		// Decoding the payload into a typical value must not panic either.
		var v map[string]any
		_ = json.Unmarshal(env.payload, &v)
		var s []byte
		_ = Raw{}.Unmarshal(env.payload, &s)
	})
}

// FuzzKey checks Group.Key's encoding: deterministic, and two different argument lists of
// the same shape never share a key (no ambiguity between ("a","bc") and ("ab","c")).
func FuzzKey(f *testing.F) {
	f.Add("a", "bc", int64(1), []byte("x"), true)
	f.Add("ab", "c", int64(-1), []byte{}, false)
	f.Add("", "", int64(0), []byte(nil), false)
	f.Add("\x00\xff", "s\x04list", int64(1<<62), []byte("\x00"), true)
	f.Fuzz(func(t *testing.T, s1, s2 string, n int64, b []byte, flag bool) {
		args := []any{s1, s2, n, b, flag}
		k1, err := makeKey(args)
		if err != nil {
			t.Fatal(err)
		}
		k2, _ := makeKey([]any{s1, s2, n, b, flag})
		if k1 != k2 || len(k1) != 32 {
			t.Fatalf("not deterministic or malformed: %q %q", k1, k2)
		}
		if s1 != "" {
			// Move the first byte of s1 to s2: a different list, a different key.
			k3, _ := makeKey([]any{s1[1:], s1[:1] + s2, n, b, flag})
			if k3 == k1 {
				t.Fatalf("(%q,%q) and (%q,%q) share a key", s1, s2, s1[1:], s1[:1]+s2)
			}
		}
		if k4, _ := makeKey([]any{s1, s2, n, string(b), flag}); k4 == k1 {
			t.Fatalf("[]byte and string arguments share a key")
		}
	})
}
