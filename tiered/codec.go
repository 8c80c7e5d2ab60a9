package tiered

import (
	"encoding/json"
	"fmt"
)

// A Codec turns group values into bytes for L2 and back. Unmarshal must not keep data or
// change it: it may be a view of memory owned by the Redis client.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// Codec identifiers recorded in the L2 envelope, so that a reader with another codec sees a
// foreign value (a miss) rather than garbage.
const (
	codecCustom byte = 0
	codecJSON   byte = 1
	codecRaw    byte = 2
)

func codecID(c Codec) byte {
	switch c.(type) {
	case JSON, *JSON:
		return codecJSON
	case Raw, *Raw:
		return codecRaw
	}
	return codecCustom
}

// JSON is the default Codec: encoding/json.
type JSON struct{}

// Marshal implements Codec.
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal implements Codec.
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// Raw stores []byte and string values as they are, for groups of blobs.
type Raw struct{}

// Marshal implements Codec for []byte, *[]byte, string and *string. It copies, so the
// caller may reuse its buffer.
func (Raw) Marshal(v any) ([]byte, error) {
	switch x := v.(type) {
	case []byte:
		return append([]byte(nil), x...), nil
	case *[]byte:
		return append([]byte(nil), *x...), nil
	case string:
		return []byte(x), nil
	case *string:
		return []byte(*x), nil
	}
	return nil, fmt.Errorf("tiered: Raw codec cannot marshal %T: use []byte or string", v)
}

// Unmarshal implements Codec into *[]byte (a copy) or *string.
func (Raw) Unmarshal(data []byte, v any) error {
	switch x := v.(type) {
	case *[]byte:
		*x = append([]byte(nil), data...)
		return nil
	case *string:
		*x = string(data)
		return nil
	}
	return fmt.Errorf("tiered: Raw codec cannot unmarshal into %T: use *[]byte or *string", v)
}
