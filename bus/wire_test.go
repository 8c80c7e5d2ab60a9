package bus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for name, m := range map[string]Message{
		"keys":      {Origin: "a1", Seq: 1, Keys: []string{"synspirit:data:x", ""}},
		"groups":    {Origin: "a1", Seq: 1 << 40, Groups: []string{"data:articles:list"}},
		"flush":     {Origin: "0123456789abcdef", Seq: 7, FlushAll: true},
		"all":       {Origin: "o", Seq: ^uint64(0), Keys: []string{"k1", "k2", "ключ"}, Groups: []string{"g"}, FlushAll: true},
		"maxOrigin": {Origin: strings.Repeat("o", MaxOriginLen), Keys: []string{strings.Repeat("k", 300)}},
	} {
		t.Run(name, func(t *testing.T) {
			p := Encode(m)
			require.Len(t, p, encodedSize(m))
			got, err := Decode(p)
			require.NoError(t, err)
			require.Equal(t, m, got)
			gotS, err := decode(string(p))
			require.NoError(t, err)
			require.Equal(t, m, gotS)
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := Encode(Message{Origin: "a", Seq: 3, Keys: []string{"k"}, Groups: []string{"g"}})
	// withHeader returns a fresh copy of a valid header up to the counts, followed by rest.
	withHeader := func(rest ...byte) []byte { return append([]byte("tcb\x01\x01a\x03\x00"), rest...) }
	for name, p := range map[string][]byte{
		"empty":          nil,
		"foreign":        []byte("hello world"),
		"json":           []byte(`{"keys":["a"]}`),
		"magic only":     []byte("tcb"),
		"version 2":      append([]byte("tcb\x02"), valid[4:]...),
		"empty origin":   []byte("tcb\x01\x00\x03\x00\x00\x00"),
		"long origin":    append(append([]byte("tcb\x01"), binary.AppendUvarint(nil, MaxOriginLen+1)...), bytes.Repeat([]byte("o"), MaxOriginLen+1)...),
		"origin past":    []byte("tcb\x01\x05ab"),
		"no seq":         []byte("tcb\x01\x01a"),
		"varint too big": []byte("tcb\x01\x01a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02\x00\x00\x00"),
		"no flags":       []byte("tcb\x01\x01a\x03"),
		"unknown flag":   []byte("tcb\x01\x01a\x03\x02\x00\x00"),
		"huge key count": withHeader(0xff, 0xff, 0xff, 0xff, 0x0f, 0x00),
		"huge groups":    withHeader(0x00, 0xff, 0xff, 0xff, 0xff, 0x0f),
		"counts sum":     withHeader(0x02, 0x02, 0x00, 0x00, 0x00),
		"key past end":   withHeader(0x01, 0x00, 0x09, 'k'),
		"truncated":      valid[:len(valid)-1],
		"trailing":       append(append([]byte{}, valid...), 0),
		"oversize":       append(append([]byte{}, valid...), make([]byte, MaxMessageSize)...),
	} {
		t.Run(name, func(t *testing.T) {
			m, err := Decode(p)
			require.ErrorIs(t, err, ErrMalformed)
			require.Equal(t, Message{}, m)
			require.True(t, strings.HasPrefix(err.Error(), "bus: "), err.Error())
		})
	}
}

func TestDecodeDoesNotAliasInput(t *testing.T) {
	p := Encode(Message{Origin: "a", Keys: []string{"key"}})
	m, err := Decode(p)
	require.NoError(t, err)
	for i := range p {
		p[i] = 'x'
	}
	require.Equal(t, []string{"key"}, m.Keys)
	require.Equal(t, "a", m.Origin)
}

// FuzzDecode checks that Decode never panics, that whatever it accepts survives a round trip,
// and that the string and []byte decoders agree.
func FuzzDecode(f *testing.F) {
	f.Add(Encode(Message{Origin: "a", Seq: 1, Keys: []string{"k"}}))
	f.Add(Encode(Message{Origin: "0123456789abcdef", Seq: 300, Keys: []string{"k1", "k2"}, Groups: []string{"g"}, FlushAll: true}))
	f.Add([]byte("tcb\x01"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, p []byte) {
		m, err := Decode(p)
		mS, errS := decode(string(p))
		if (err == nil) != (errS == nil) {
			t.Fatalf("[]byte and string decoders disagree: %v vs %v", err, errS)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		require.Equal(t, m, mS)
		again, err := Decode(Encode(m))
		require.NoError(t, err)
		require.Equal(t, m, again)
		if len(Encode(m)) > len(p) {
			t.Fatalf("re-encoding grew: %d > %d bytes", len(Encode(m)), len(p))
		}
	})
}
