package tiered

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"
)

// MakeKey is the original make_key(prefix, *args) without the prefix: a stable hash of args,
// identical across processes, machines and Go versions. [Group.Key] is MakeKey for one group.
// It fails only for an argument that encoding/json cannot encode.
func MakeKey(args ...any) (string, error) { return makeKey(args) }

// makeKey is MakeKey.
//
// The canonical encoding is, for each argument in order, a one-byte type tag followed by
// its value:
//
//	nil                         'n'
//	bool                        't' or 'f'
//	signed integers             'i' + decimal (int8…int64 and int agree: 7 is 7)
//	unsigned integers           'u' + decimal
//	float32, float64            'd' + strconv.FormatFloat(x, 'g', -1, 64)
//	string                      's' + uvarint length + bytes
//	[]byte                      'b' + uvarint length + bytes
//	time.Time                   'T' + UTC RFC 3339 with nanoseconds
//	time.Duration               'D' + decimal nanoseconds
//	fmt.Stringer                'S' + uvarint length + String()
//	slices and arrays           'L' + uvarint count + each element encoded the same way
//	anything else               'J' + Go type name + uvarint length + encoding/json bytes
//
// Every variable-length field carries its length, so two different argument lists never
// encode alike ("a","bc" differs from "ab","c"), and 1 differs from "1". The key is the
// SHA-256 of that encoding, truncated to 128 bits, in lowercase hex (32 characters). It
// depends on nothing of the process, machine or Go version (JSON of maps sorts keys).
func makeKey(args []any) (string, error) {
	var buf [256]byte
	b := buf[:0]
	var err error
	for _, a := range args {
		if b, err = appendKeyArg(b, a); err != nil {
			return "", err
		}
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16]), nil
}

func appendKeyArg(b []byte, a any) ([]byte, error) {
	switch x := a.(type) {
	case nil:
		return append(b, 'n'), nil
	case bool:
		if x {
			return append(b, 't'), nil
		}
		return append(b, 'f'), nil
	case int:
		return strconv.AppendInt(append(b, 'i'), int64(x), 10), nil
	case int8:
		return strconv.AppendInt(append(b, 'i'), int64(x), 10), nil
	case int16:
		return strconv.AppendInt(append(b, 'i'), int64(x), 10), nil
	case int32:
		return strconv.AppendInt(append(b, 'i'), int64(x), 10), nil
	case int64:
		return strconv.AppendInt(append(b, 'i'), x, 10), nil
	case uint:
		return strconv.AppendUint(append(b, 'u'), uint64(x), 10), nil
	case uint8:
		return strconv.AppendUint(append(b, 'u'), uint64(x), 10), nil
	case uint16:
		return strconv.AppendUint(append(b, 'u'), uint64(x), 10), nil
	case uint32:
		return strconv.AppendUint(append(b, 'u'), uint64(x), 10), nil
	case uint64:
		return strconv.AppendUint(append(b, 'u'), x, 10), nil
	case float32:
		return appendFloat(b, float64(x)), nil
	case float64:
		return appendFloat(b, x), nil
	case string:
		return appendLenBytes(append(b, 's'), x), nil
	case []byte:
		return appendLenBytes(append(b, 'b'), string(x)), nil
	case time.Time:
		return append(append(b, 'T'), x.UTC().Format(time.RFC3339Nano)...), nil
	case time.Duration:
		return strconv.AppendInt(append(b, 'D'), int64(x), 10), nil
	case fmt.Stringer:
		return appendLenBytes(append(b, 'S'), x.String()), nil
	}
	v := reflect.ValueOf(a)
	if k := v.Kind(); k == reflect.Slice || k == reflect.Array {
		b = binary.AppendUvarint(append(b, 'L'), uint64(v.Len()))
		var err error
		for i := 0; i < v.Len(); i++ {
			if b, err = appendKeyArg(b, v.Index(i).Interface()); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	j, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("tiered: key argument of type %T: %w", a, err)
	}
	b = appendLenBytes(append(b, 'J'), v.Type().String())
	return appendLenBytes(b, string(j)), nil
}

func appendFloat(b []byte, f float64) []byte {
	if f == 0 {
		f = 0 // -0 and +0 are one key
	}
	if math.IsNaN(f) {
		return append(b, 'd', 'N', 'a', 'N')
	}
	return strconv.AppendFloat(append(b, 'd'), f, 'g', -1, 64)
}

func appendLenBytes(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
