package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/tiered"
)

// pngBytes is n bytes that sniff as image/png.
func pngBytes(n int, fill byte) []byte {
	b := bytes.Repeat([]byte{fill}, max(n, 8))
	copy(b, "\x89PNG\r\n\x1a\n")
	return b[:max(n, 8)]
}

func TestSetGetRoundTrip(t *testing.T) {
	e := newCacheEnv(t, Options{})
	ctx := context.Background()
	data := pngBytes(1000, 'a')
	before := time.Now().Truncate(time.Millisecond)
	require.NoError(t, e.ic.Set(ctx, "https://a.example/x.png", data, "image/png", 0))

	img, err := e.ic.Get(ctx, "https://a.example/x.png")
	require.NoError(t, err)
	assert.Equal(t, data, img.Data)
	assert.Equal(t, "image/png", img.ContentType)
	assert.Equal(t, 1000, img.Size)
	sum := sha256.Sum256(data)
	assert.Equal(t, `"`+hex.EncodeToString(sum[:16])+`"`, img.ETag)
	assert.False(t, img.StoredAt.Before(before))
	assert.WithinDuration(t, img.StoredAt.Add(DefaultTTL), img.ExpiresAt, time.Millisecond)
}

func TestEmptyContentTypeIsSniffed(t *testing.T) {
	e := newCacheEnv(t, Options{})
	ctx := context.Background()
	require.NoError(t, e.ic.Set(ctx, "u", pngBytes(20, 0), "", 0))
	img, err := e.ic.Get(ctx, "u")
	require.NoError(t, err)
	assert.Equal(t, "image/png", img.ContentType)
}

func TestGetMissIsNotFound(t *testing.T) {
	e := newCacheEnv(t, Options{})
	_, err := e.ic.Get(context.Background(), "https://a.example/none.png")
	assert.ErrorIs(t, err, tiered.ErrNotFound)
}

func TestRedisKeyIsHashOfURL(t *testing.T) {
	e := newCacheEnv(t, Options{})
	const u = "https://a.example/x.png"
	require.NoError(t, e.ic.Set(context.Background(), u, pngBytes(10, 1), "image/png", 0))
	sum := sha256.Sum256([]byte(u))
	want := redisKey(t, e.ic, u)
	assert.Regexp(t, `^t:img@[0-9a-z]{1,13}:`+hex.EncodeToString(sum[:])+`$`, want)
	n, err := e.s.Do("EXISTS", want).AsInt64()
	require.NoError(t, err)
	assert.EqualValues(t, 1, n)
	ttl, err := e.s.Do("PTTL", want).AsInt64()
	require.NoError(t, err)
	assert.InDelta(t, DefaultTTL.Milliseconds(), ttl, 5000)
}

func TestValueUnderAnotherURLsKeyIsAMiss(t *testing.T) {
	e := newCacheEnv(t, Options{})
	ctx := context.Background()
	const a, b = "https://a.example/a.png", "https://a.example/b.png"
	require.NoError(t, e.ic.Set(ctx, a, pngBytes(100, 'A'), "image/png", 0))
	raw, err := e.s.Do("GET", redisKey(t, e.ic, a)).ToString()
	require.NoError(t, err)
	// A plain client writes A's value under B's key: a collision, as far as B can tell.
	e.s.Do("SET", redisKey(t, e.ic, b), raw)

	_, err = e.ic.Get(ctx, b)
	assert.ErrorIs(t, err, tiered.ErrNotFound)
	img, err := e.ic.Get(ctx, a)
	require.NoError(t, err)
	assert.Equal(t, pngBytes(100, 'A'), img.Data)
}

func TestCorruptValueIsAMiss(t *testing.T) {
	e := newCacheEnv(t, Options{})
	const u = "https://a.example/c.png"
	require.NoError(t, e.ic.Set(context.Background(), u, pngBytes(100, 'A'), "image/png", 0))
	raw, err := e.s.Do("GET", redisKey(t, e.ic, u)).ToString()
	require.NoError(t, err)
	for _, bad := range []string{"garbage", raw[:len(raw)-1], raw + "x", raw[:20]} {
		e.s.Do("SET", redisKey(t, e.ic, u), bad)
		_, err = e.ic.Get(context.Background(), u)
		assert.ErrorIs(t, err, tiered.ErrNotFound)
	}
}

func TestCodecRejectsMalformed(t *testing.T) {
	good, err := entryCodec{}.Marshal(&entry{url: "u", contentType: "image/png", etag: `"x"`, data: []byte("data")})
	require.NoError(t, err)
	var e *entry
	require.NoError(t, entryCodec{}.Unmarshal(good, &e))
	assert.Equal(t, "u", e.url)
	for i := 0; i < len(good); i++ {
		assert.Error(t, entryCodec{}.Unmarshal(good[:i], &e), "truncated at %d", i)
	}
	bad := append([]byte{9}, good[1:]...)
	assert.Error(t, entryCodec{}.Unmarshal(bad, &e))
	_, err = entryCodec{}.Marshal("x")
	assert.Error(t, err)
}

func TestSetCopiesCallerSlice(t *testing.T) {
	e := newCacheEnv(t, Options{})
	ctx := context.Background()
	data := pngBytes(64, 'a')
	require.NoError(t, e.ic.Set(ctx, "u", data, "image/png", 0))
	data[20] = 'Z'
	for i := 0; i < 5; i++ { // from Redis, then (once ristretto applied the fill) from L1
		img, err := e.ic.Get(ctx, "u")
		require.NoError(t, err)
		assert.Equal(t, pngBytes(64, 'a'), img.Data)
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGetReturnsACopy(t *testing.T) {
	e := newCacheEnv(t, Options{})
	ctx := context.Background()
	require.NoError(t, e.ic.Set(ctx, "u", pngBytes(64, 'a'), "image/png", 0))
	waitL1Hit(t, e, "u")
	for i := 0; i < 3; i++ {
		img, err := e.ic.Get(ctx, "u")
		require.NoError(t, err)
		assert.Equal(t, pngBytes(64, 'a'), img.Data)
		for j := range img.Data {
			img.Data[j] = 'Z'
		}
	}
	entry, err := e.ic.get(ctx, "u")
	require.NoError(t, err)
	assert.Equal(t, pngBytes(64, 'a'), entry.data)
}

// waitL1Hit reads u until a read is served from L1.
func waitL1Hit(t *testing.T, e *env, u string) {
	t.Helper()
	require.Eventually(t, func() bool {
		before := e.tc.Stats().L1Hits
		_, err := e.ic.get(context.Background(), u)
		require.NoError(t, err)
		return e.tc.Stats().L1Hits > before
	}, 5*time.Second, 5*time.Millisecond)
}

func TestL1HoldsOnlySmallImages(t *testing.T) {
	e := newCacheEnv(t, Options{L1MaxEntryBytes: 4 << 10})
	ctx := context.Background()
	require.NoError(t, e.ic.Set(ctx, "small", pngBytes(1<<10, 's'), "image/png", 0))
	require.NoError(t, e.ic.Set(ctx, "big", pngBytes(8<<10, 'b'), "image/png", 0))
	waitL1Hit(t, e, "small")

	for i := 0; i < 20; i++ {
		before := e.tc.Stats()
		img, err := e.ic.Get(ctx, "big")
		require.NoError(t, err)
		assert.Len(t, img.Data, 8<<10)
		after := e.tc.Stats()
		assert.Equal(t, before.L1Hits, after.L1Hits, "a big image was served from L1")
		assert.Greater(t, after.L2Hits, before.L2Hits)
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTooLarge(t *testing.T) {
	e := newCacheEnv(t, Options{MaxImageBytes: 1000})
	ctx := context.Background()
	require.NoError(t, e.ic.Set(ctx, "ok", pngBytes(1000, 1), "image/png", 0))
	err := e.ic.Set(ctx, "big", pngBytes(1001, 1), "image/png", 0)
	assert.ErrorIs(t, err, ErrTooLarge)
	_, err = e.ic.Get(ctx, "big")
	assert.ErrorIs(t, err, tiered.ErrNotFound)
}

func TestDefaultMaxImageBytes(t *testing.T) {
	e := newCacheEnv(t, Options{})
	err := e.ic.Set(context.Background(), "big", make([]byte, DefaultMaxImageBytes+1), "image/png", 0)
	assert.ErrorIs(t, err, ErrTooLarge)
}

func TestPerCallTTL(t *testing.T) {
	e := newCacheEnv(t, Options{DefaultTTL: time.Hour})
	ctx := context.Background()
	for i, ttl := range []time.Duration{0, 5 * time.Second, 90 * time.Second, 5 * time.Second} {
		u := "u" + strconv.Itoa(i)
		require.NoError(t, e.ic.Set(ctx, u, pngBytes(10, 1), "image/png", ttl))
		got, err := e.s.Do("PTTL", redisKey(t, e.ic, u)).AsInt64()
		require.NoError(t, err)
		want := ttl
		if want == 0 {
			want = time.Hour
		}
		assert.InDelta(t, want.Milliseconds(), got, 2000, "ttl %v", ttl)
		img, err := e.ic.Get(ctx, u)
		require.NoError(t, err)
		assert.WithinDuration(t, img.StoredAt.Add(want), img.ExpiresAt, time.Millisecond)
	}
	assert.ErrorIs(t, e.ic.Set(ctx, "neg", pngBytes(10, 1), "image/png", -time.Second), ErrInvalidOptions)
}

func TestShortTTLExpires(t *testing.T) {
	e := newCacheEnv(t, Options{})
	ctx := context.Background()
	require.NoError(t, e.ic.Set(ctx, "u", pngBytes(10, 1), "image/png", time.Second))
	waitL1Hit(t, e, "u")
	require.Eventually(t, func() bool {
		_, err := e.ic.Get(ctx, "u")
		return errors.Is(err, tiered.ErrNotFound)
	}, 5*time.Second, 50*time.Millisecond)
}

func TestDelete(t *testing.T) {
	e := newCacheEnv(t, Options{})
	ctx := context.Background()
	require.NoError(t, e.ic.Set(ctx, "u", pngBytes(10, 1), "image/png", 0))
	waitL1Hit(t, e, "u")
	require.NoError(t, e.ic.Delete(ctx, "u"))
	_, err := e.ic.Get(ctx, "u")
	assert.ErrorIs(t, err, tiered.ErrNotFound)
}

func TestCoherentAcrossInstances(t *testing.T) {
	e := newCacheEnv(t, Options{})
	other := New(newTiered(t, e.s), Options{})
	ctx := context.Background()
	require.NoError(t, e.ic.Set(ctx, "u", pngBytes(10, 'a'), "image/png", 0))
	waitL1Hit(t, e, "u")

	require.NoError(t, other.Set(ctx, "u", pngBytes(10, 'b'), "image/png", time.Minute))
	require.Eventually(t, func() bool {
		img, err := e.ic.Get(ctx, "u")
		return err == nil && bytes.Equal(img.Data, pngBytes(10, 'b'))
	}, 5*time.Second, 5*time.Millisecond)

	waitL1Hit(t, e, "u")
	require.NoError(t, other.Delete(ctx, "u"))
	require.Eventually(t, func() bool {
		_, err := e.ic.Get(ctx, "u")
		return errors.Is(err, tiered.ErrNotFound)
	}, 5*time.Second, 5*time.Millisecond)
}

func TestBadOptions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, ic := range []*Cache{
		New(e.tc, Options{DefaultTTL: -1}),
		New(e.tc, Options{MaxImageBytes: -1}),
		New(e.tc, Options{L1MaxEntryBytes: -1}),
		New(nil, Options{}),
	} {
		assert.ErrorIs(t, ic.Set(ctx, "u", []byte("x"), "", 0), ErrInvalidOptions)
		_, err := ic.Get(ctx, "u")
		assert.ErrorIs(t, err, ErrInvalidOptions)
		assert.ErrorIs(t, ic.Delete(ctx, "u"), ErrInvalidOptions)
	}
	ic := New(e.tc, Options{})
	assert.Error(t, ic.Set(ctx, "", []byte("x"), "", 0))
	_, err := ic.Get(ctx, "")
	assert.Error(t, err)
}

func TestRedisDownIsUnavailable(t *testing.T) {
	e := newCacheEnv(t, Options{})
	e.s.Stop()
	_, err := e.ic.Get(context.Background(), "u")
	assert.ErrorIs(t, err, tiered.ErrUnavailable)
	assert.ErrorIs(t, e.ic.Set(context.Background(), "u", pngBytes(10, 1), "", 0), tiered.ErrUnavailable)
}
