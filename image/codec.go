package image

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// entry is an image as the cache holds it. Entries served from L1 are shared: never
// changed after they are made.
type entry struct {
	url         string
	contentType string
	etag        string
	storedAt    int64 // Unix milliseconds
	expiresAt   int64 // Unix milliseconds
	data        []byte
}

func (e *entry) image() Image {
	return Image{
		Data:        e.data,
		ContentType: e.contentType,
		ETag:        e.etag,
		Size:        len(e.data),
		StoredAt:    time.UnixMilli(e.storedAt),
		ExpiresAt:   time.UnixMilli(e.expiresAt),
	}
}

// The payload format inside the tiered envelope:
//
//	version  1 byte (1)
//	storedAt 8 bytes, Unix ms, big-endian
//	expires  8 bytes, Unix ms, big-endian
//	url, contentType, etag, data: each a uvarint length then the bytes
//
// Anything else (another version, a short or overlong value) is an error, which tiered
// turns into a miss plus a log line.
const (
	entryVersion    = 1
	entryHeaderSize = 1 + 8 + 8
	maxFieldLen     = 1 << 16 // url, content type and etag
)

var errBadEntry = errors.New("image: malformed cached image")

// entryCodec is the tiered.Codec of the "img" group: *entry values.
type entryCodec struct{}

func (entryCodec) Marshal(v any) ([]byte, error) {
	e, ok := v.(*entry)
	if !ok || e == nil {
		return nil, fmt.Errorf("image: codec cannot marshal %T", v)
	}
	n := entryHeaderSize + 4*binary.MaxVarintLen64 + len(e.url) + len(e.contentType) + len(e.etag) + len(e.data)
	b := make([]byte, 0, n)
	b = append(b, entryVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(e.storedAt))
	b = binary.BigEndian.AppendUint64(b, uint64(e.expiresAt))
	b = appendField(b, e.url)
	b = appendField(b, e.contentType)
	b = appendField(b, e.etag)
	b = binary.AppendUvarint(b, uint64(len(e.data)))
	return append(b, e.data...), nil
}

func appendField(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Unmarshal decodes into a new *entry that shares nothing with data (which may be memory of
// the Redis client's).
func (entryCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(**entry)
	if !ok {
		return fmt.Errorf("image: codec cannot unmarshal into %T", v)
	}
	if len(data) < entryHeaderSize {
		return fmt.Errorf("%w: %d bytes", errBadEntry, len(data))
	}
	if data[0] != entryVersion {
		return fmt.Errorf("%w: version %d", errBadEntry, data[0])
	}
	e := &entry{
		storedAt:  int64(binary.BigEndian.Uint64(data[1:9])),
		expiresAt: int64(binary.BigEndian.Uint64(data[9:17])),
	}
	rest := data[entryHeaderSize:]
	var err error
	var f []byte
	if f, rest, err = field(rest, maxFieldLen); err != nil {
		return err
	}
	e.url = string(f)
	if f, rest, err = field(rest, maxFieldLen); err != nil {
		return err
	}
	e.contentType = string(f)
	if f, rest, err = field(rest, maxFieldLen); err != nil {
		return err
	}
	e.etag = string(f)
	if f, rest, err = field(rest, len(rest)); err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errBadEntry, len(rest))
	}
	e.data = append(make([]byte, 0, len(f)), f...)
	*p = e
	return nil
}

func field(b []byte, limit int) (f, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(limit) || n > uint64(len(b)-k) {
		return nil, nil, fmt.Errorf("%w: bad field length", errBadEntry)
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}
