package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/synspirit/tiercache/internal/sentinel"
	"github.com/synspirit/tiercache/tiered"
)

// Defaults of Options. Each is used when its field is left at the zero value.
const (
	// DefaultTTL is the L2 TTL of an image stored with ttl 0 (the original design's 24 h).
	DefaultTTL = 24 * time.Hour
	// DefaultMaxImageBytes is the largest image Set accepts and the proxy fetches.
	DefaultMaxImageBytes = 10 << 20
	// DefaultL1MaxEntryBytes is the largest encoded image kept in the in-process L1.
	DefaultL1MaxEntryBytes = 256 << 10
	// entryOverhead bounds what an entry adds to its image's bytes: the URL, content type
	// and ETag (each at most maxFieldLen) and the header.
	entryOverhead = entryHeaderSize + 4*10 + 3*maxFieldLen
)

// GroupName is the tiered group that holds images: their Redis keys are
// <KeyPrefix>img@<generation>:<hex SHA-256 of the url>.
const GroupName = "img"

// Sentinel errors of the package, matched with errors.Is. Misses are tiered.ErrNotFound and
// an unreachable Redis tiered.ErrUnavailable, as for every tiered entry.
var (
	// ErrTooLarge is returned by Set for an image larger than Options.MaxImageBytes. It
	// matches tiered.ErrTooLarge too.
	ErrTooLarge error = sentinel.New("image: image too large", tiered.ErrTooLarge)
	// ErrNotImage is returned by Set for data that is not one of the raster image formats it
	// accepts, or whose declared content type is not that format's.
	ErrNotImage = errors.New("image: not a supported raster image")
	// ErrInvalidOptions wraps every error caused by bad Options or ProxyOptions.
	ErrInvalidOptions = errors.New("image: invalid options")
)

// errEmptyURL is every call's answer for an empty url.
var errEmptyURL = fmt.Errorf("%w: empty url", ErrInvalidOptions)

// Options configure a Cache. The zero value uses the defaults.
type Options struct {
	// DefaultTTL is the L2 TTL of images stored with ttl 0. Default DefaultTTL.
	DefaultTTL time.Duration
	// MaxImageBytes is the largest image Set accepts (and the proxy fetches). Default
	// DefaultMaxImageBytes.
	MaxImageBytes int64
	// L1MaxEntryBytes keeps images whose encoded size (the bytes plus the URL, content type
	// and ETag, a few hundred bytes) exceeds it out of the in-process L1: they are served
	// from Redis, so a few big images cannot push out many small ones. Default
	// DefaultL1MaxEntryBytes.
	L1MaxEntryBytes int64
}

// withDefaults returns o with defaults filled in, and what is wrong with it.
func (o Options) withDefaults() (Options, []error) {
	var errs []error
	switch {
	case o.DefaultTTL < 0:
		errs = append(errs, fmt.Errorf("negative DefaultTTL %v", o.DefaultTTL))
	case o.DefaultTTL > tiered.MaxTTL:
		errs = append(errs, fmt.Errorf("DefaultTTL %v is longer than tiered.MaxTTL (%v)", o.DefaultTTL, tiered.MaxTTL))
	case o.DefaultTTL == 0:
		o.DefaultTTL = DefaultTTL
	}
	if o.MaxImageBytes < 0 {
		errs = append(errs, fmt.Errorf("negative MaxImageBytes %d", o.MaxImageBytes))
	} else if o.MaxImageBytes == 0 {
		o.MaxImageBytes = DefaultMaxImageBytes
	}
	if o.L1MaxEntryBytes < 0 {
		errs = append(errs, fmt.Errorf("negative L1MaxEntryBytes %d", o.L1MaxEntryBytes))
	} else if o.L1MaxEntryBytes == 0 {
		o.L1MaxEntryBytes = DefaultL1MaxEntryBytes
	}
	return o, errs
}

// Image is a cached image. Get returns a copy: the caller may change Data.
type Image struct {
	Data        []byte
	ContentType string
	ETag        string // strong: `"` + hex of SHA-256(Data)[:16] + `"`
	Size        int    // len(Data)
	StoredAt    time.Time
	ExpiresAt   time.Time // when the L2 entry expires
}

// Cache is the image blob cache: the original design's image cache, over a tiered.Cache.
// It is safe for concurrent use and holds no goroutines: closing the tiered.Cache is enough.
type Cache struct {
	c     *tiered.Cache
	opts  Options
	err   error                 // bad Options or a nil *tiered.Cache: every call returns it
	group *tiered.Group[*entry] // every image, each with its own TTL
}

// New returns an image cache over c. Bad options do not panic: [Cache.Err] reports them,
// and every call returns the error, matching ErrInvalidOptions.
func New(c *tiered.Cache, opts Options) *Cache {
	o, problems := opts.withDefaults()
	ic := &Cache{c: c, opts: o}
	if c == nil {
		problems = append(problems, errors.New("nil *tiered.Cache"))
	}
	if len(problems) == 0 {
		ic.group = tiered.NewGroup[*entry](c, GroupName, o.DefaultTTL,
			tiered.WithCodec(entryCodec{}), tiered.WithL1MaxEntryBytes(o.L1MaxEntryBytes),
			tiered.WithMaxValueBytes(o.MaxImageBytes+entryOverhead))
		if err := ic.group.Err(); err != nil {
			problems = append(problems, sentinel.WithoutPrefix(err, tiered.ErrInvalidOptions.Error()+": "))
		}
	}
	if len(problems) > 0 {
		ic.err = fmt.Errorf("%w: %w", ErrInvalidOptions, sentinel.Join(problems...))
	}
	return ic
}

// Err is the error every call returns when New was given bad Options or a nil cache
// (matching ErrInvalidOptions); nil for a usable Cache.
func (ic *Cache) Err() error { return ic.err }

// Key is the group key of url: the hex SHA-256 of the URL.
func Key(url string) string {
	sum := sha256.Sum256([]byte(url))
	return hex.EncodeToString(sum[:])
}

// RedisKey is the Redis key under which url's image is stored now: <KeyPrefix>img@<gen>:<Key(url)>
// (the group's generation follows "img" after a tiered Group.Clear).
func (ic *Cache) RedisKey(ctx context.Context, url string) (string, error) {
	if ic.err != nil {
		return "", ic.err
	}
	return ic.group.RedisKey(ctx, Key(url))
}

// ETag returns the strong ETag the cache gives data.
func ETag(data []byte) string {
	sum := sha256.Sum256(data)
	var b [2 + 32]byte
	b[0] = '"'
	hex.Encode(b[1:33], sum[:16])
	b[33] = '"'
	return string(b[:])
}

// Get returns the image stored for url: a copy. It returns an error matching
// tiered.ErrNotFound on a miss and tiered.ErrUnavailable when Redis cannot be reached.
func (ic *Cache) Get(ctx context.Context, url string) (Image, error) {
	e, err := ic.get(ctx, url)
	if err != nil {
		return Image{}, err
	}
	img := e.image()
	img.Data = append([]byte(nil), e.data...)
	return img, nil
}

// get returns the shared entry of url, without copying: the hot path of the proxy. The
// entry may be held by L1 and other callers: never change it.
func (ic *Cache) get(ctx context.Context, url string) (*entry, error) {
	if ic.err != nil {
		return nil, ic.err
	}
	if url == "" {
		return nil, errEmptyURL
	}
	e, err := ic.group.Get(ctx, Key(url))
	if err != nil {
		return nil, err
	}
	if e == nil || e.url != url {
		// A hash collision, or a value copied under another key: never another URL's bytes.
		return nil, fmt.Errorf("image: %w (stored value is for another url)", tiered.ErrNotFound)
	}
	return e, nil
}

// Set stores data as the image of url for ttl (0: Options.DefaultTTL), and makes every
// instance drop what it held for url. Set keeps no reference to data.
//
// Set accepts only raster images, recognised by their first bytes: PNG, JPEG, GIF, WebP,
// AVIF, BMP and ICO. contentType may be empty or application/octet-stream (the bytes
// decide), or must name the same format as the bytes (aliases such as image/jpg are
// accepted); the stored Image.ContentType is the format's type as the bytes show it. SVG,
// HTML, XML, script and anything else are refused with an error matching ErrNotImage: the
// proxy would serve them under the site's own origin.
//
// It returns an error matching ErrTooLarge for an image larger than Options.MaxImageBytes,
// and ErrInvalidOptions for a negative ttl or one longer than tiered.MaxTTL.
func (ic *Cache) Set(ctx context.Context, url string, data []byte, contentType string, ttl time.Duration) error {
	_, err := ic.set(ctx, url, data, contentType, ttl)
	return err
}

// set stores an image and returns its entry, which aliases data: the proxy serves its own
// freshly fetched buffer from it.
func (ic *Cache) set(ctx context.Context, url string, data []byte, contentType string, ttl time.Duration) (*entry, error) {
	if ic.err != nil {
		return nil, ic.err
	}
	if url == "" {
		return nil, errEmptyURL
	}
	if int64(len(data)) > ic.opts.MaxImageBytes {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(data), ic.opts.MaxImageBytes)
	}
	switch {
	case ttl < 0 || ttl > tiered.MaxTTL:
		return nil, fmt.Errorf("%w: ttl %v is negative or longer than tiered.MaxTTL", ErrInvalidOptions, ttl)
	case ttl == 0:
		ttl = ic.opts.DefaultTTL
	}
	contentType, err := acceptedType(data, contentType)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	e := &entry{
		url:         url,
		contentType: contentType,
		etag:        ETag(data),
		storedAt:    now.UnixMilli(),
		expiresAt:   now.Add(ttl).UnixMilli(),
		data:        data, // the codec encodes a copy
	}
	return e, ic.group.Set(ctx, Key(url), e, tiered.TTL(ttl))
}

// Delete removes url's image, on every instance.
func (ic *Cache) Delete(ctx context.Context, url string) error {
	if ic.err != nil {
		return ic.err
	}
	if url == "" {
		return errEmptyURL
	}
	return ic.group.Delete(ctx, Key(url))
}

// MaxImageBytes is the largest image the cache accepts.
func (ic *Cache) MaxImageBytes() int64 { return ic.opts.MaxImageBytes }
