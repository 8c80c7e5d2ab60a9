package image

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/tiered"
)

// Samples of each raster format the cache accepts: the first bytes of a real file, padded.
func pad(b []byte) []byte { return append(b, bytes.Repeat([]byte{0}, 64)...) }

func isoBox(major string, compatible ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(16+4*len(compatible)))
	b = append(b, "ftyp"+major+"\x00\x00\x00\x00"...)
	for _, c := range compatible {
		b = append(b, c...)
	}
	return pad(b)
}

func bmpHeader(dibSize uint32) []byte {
	b := []byte("BM\x46\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00")
	return pad(binary.LittleEndian.AppendUint32(b, dibSize))
}

var rasterSamples = map[string][]byte{
	"image/png":    pad([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")),
	"image/jpeg":   pad([]byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00")),
	"image/gif":    pad([]byte("GIF89a\x01\x00\x01\x00")),
	"image/webp":   pad([]byte("RIFF\x24\x00\x00\x00WEBPVP8 ")),
	"image/avif":   isoBox("avif", "mif1", "miaf"),
	"image/bmp":    bmpHeader(40),
	"image/x-icon": pad([]byte("\x00\x00\x01\x00\x01\x00\x10\x10\x00\x00\x01\x00\x20\x00\x68\x04\x00\x00\x16\x00\x00\x00")),
}

// Content that is no raster image, or one that can carry script.
var nonRasterSamples = map[string][]byte{
	"svg":           []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`),
	"svg with bom":  []byte("\xef\xbb\xbf<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>"),
	"html":          []byte("<html><script>alert(1)</script></html>"),
	"html no tags":  []byte("<!DOCTYPE html><p>hi"),
	"javascript":    []byte("alert(document.cookie)"),
	"xml":           []byte(`<?xml version="1.0"?><x:script xmlns:x="http://www.w3.org/1999/xhtml">alert(1)</x:script>`),
	"pdf":           []byte("%PDF-1.7\n"),
	"empty":         {},
	"short png":     []byte("\x89PNG\r\n"),
	"wave":          pad([]byte("RIFF\x24\x00\x00\x00WAVEfmt ")),
	"mp4":           isoBox("isom", "iso2", "mp41"),
	"heic":          isoBox("heic", "mif1"),
	"bmp bad dib":   bmpHeader(7),
	"bm text":       []byte("BMW is a car <script>alert(1)</script>"),
	"ico no images": pad([]byte("\x00\x00\x01\x00\x00\x00")),
	"zeros":         make([]byte, 100),
}

func TestSniffRaster(t *testing.T) {
	for want, b := range rasterSamples {
		got, ok := sniffRaster(b)
		assert.True(t, ok, want)
		assert.Equal(t, want, got)
	}
	got, ok := sniffRaster(isoBox("mif1", "miaf", "avif"))
	assert.True(t, ok, "avif as a compatible brand")
	assert.Equal(t, "image/avif", got)
	for name, b := range nonRasterSamples {
		got, ok := sniffRaster(b)
		assert.False(t, ok, "%s sniffed as %s", name, got)
	}
}

// Set accepts only raster images, recognised by their bytes, and stores the recognised type.
func TestSetAcceptsOnlyRasterImages(t *testing.T) {
	e := newCacheEnv(t, Options{})
	ctx := context.Background()
	for want, b := range rasterSamples {
		for _, declared := range []string{"", want, want + "; charset=binary", "application/octet-stream"} {
			u := "https://a.example/" + url.PathEscape(want+declared)
			require.NoError(t, e.ic.Set(ctx, u, b, declared, 0), "%s declared %q", want, declared)
			img, err := e.ic.Get(ctx, u)
			require.NoError(t, err)
			assert.Equal(t, want, img.ContentType, "%s declared %q", want, declared)
		}
	}
	for alias, b := range map[string][]byte{"image/jpg": rasterSamples["image/jpeg"], "IMAGE/PNG": rasterSamples["image/png"],
		"image/vnd.microsoft.icon": rasterSamples["image/x-icon"], "image/x-ms-bmp": rasterSamples["image/bmp"]} {
		assert.NoError(t, e.ic.Set(ctx, "https://a.example/alias", b, alias, 0), alias)
	}

	for _, c := range []struct {
		name, contentType string
		data              []byte
	}{
		{"svg", "image/svg+xml", nonRasterSamples["svg"]},
		{"svg declared png", "image/png", nonRasterSamples["svg"]},
		{"html", "text/html", nonRasterSamples["html"]},
		{"html sniffed", "", nonRasterSamples["html"]},
		{"javascript", "application/javascript", nonRasterSamples["javascript"]},
		{"javascript sniffed", "", nonRasterSamples["javascript"]},
		{"xml", "application/xml", nonRasterSamples["xml"]},
		{"empty", "", nil},
		{"png declared html", "text/html", rasterSamples["image/png"]},
		{"png declared svg", "image/svg+xml", rasterSamples["image/png"]},
		{"png declared jpeg", "image/jpeg", rasterSamples["image/png"]},
		{"png declared garbage", "not a type", rasterSamples["image/png"]},
	} {
		u := "https://a.example/" + url.PathEscape(c.name)
		err := e.ic.Set(ctx, u, c.data, c.contentType, 0)
		require.ErrorIs(t, err, ErrNotImage, c.name)
		assert.Contains(t, err.Error(), "image: ", c.name)
		_, err = e.ic.Get(ctx, u)
		assert.ErrorIs(t, err, tiered.ErrNotFound, "%s was stored", c.name)
	}
}

// Entries that Set would refuse can still be in Redis (written by an older version, or by
// another program): the proxy never serves them, whatever type they were stored with, and
// serves an image under the type its bytes show.
func TestProxyServesOnlyRasterEntries(t *testing.T) {
	e := newCacheEnv(t, Options{})
	ctx := context.Background()
	const base = "http://127.0.0.1:1/"
	store := func(name, contentType string, data []byte) string {
		u := base + url.PathEscape(name)
		now := time.Now()
		require.NoError(t, e.ic.group.Set(ctx, Key(u), &entry{url: u, contentType: contentType, etag: ETag(data),
			storedAt: now.UnixMilli(), expiresAt: now.Add(time.Hour).UnixMilli(), data: data}))
		return u
	}
	p := openProxy(t, e, ProxyOptions{AllowedHosts: []string{"127.0.0.1:1"}})
	for _, c := range []struct {
		name, contentType string
		data              []byte
	}{
		{"svg", "image/svg+xml", nonRasterSamples["svg"]},
		{"html", "text/html", nonRasterSamples["html"]},
		{"javascript", "application/javascript", nonRasterSamples["javascript"]},
		{"html without a type", "", nonRasterSamples["html"]},
		{"html as png", "image/png", nonRasterSamples["html"]},
		{"xml", "text/xml", nonRasterSamples["xml"]},
		{"empty", "image/png", nil},
	} {
		rec := get(t, p, store(c.name, c.contentType, c.data))
		assertPlainError(t, rec, http.StatusUnsupportedMediaType, "unsupported media type")
		assert.NotContains(t, rec.Body.String(), "script", c.name)
		assertSafeHeaders(t, rec.Result(), c.name)
	}
	for want, b := range rasterSamples {
		rec := get(t, p, store("as html "+want, "text/html", b))
		require.Equal(t, http.StatusOK, rec.Code, "%s: %s", want, rec.Body.String())
		assert.Equal(t, want, rec.Header().Get("Content-Type"), "the sniffed type is served")
		assert.Equal(t, b, rec.Body.Bytes())
		assertSafeHeaders(t, rec.Result(), want)
	}
}

func assertSafeHeaders(t *testing.T, res *http.Response, msg string) {
	t.Helper()
	assert.Equal(t, "default-src 'none'; sandbox", res.Header.Get("Content-Security-Policy"), msg)
	assert.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"), msg)
}

// Every answer of the proxy, image or not, carries the CSP and nosniff.
func TestProxyAnswersCarrySafeHeaders(t *testing.T) {
	e := newCacheEnv(t, Options{})
	body := rasterSamples["image/gif"]
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/gif")
		_, _ = w.Write(body)
	})
	p := openProxy(t, e, ProxyOptions{}, o)
	u := o.URL + "/a.gif"
	for name, rec := range map[string]interface{ Result() *http.Response }{
		"200":       get(t, p, u),
		"304":       get(t, p, u, "If-None-Match", ETag(body)),
		"206":       get(t, p, u, "Range", "bytes=0-3"),
		"HEAD":      do(t, p, http.MethodHead, "/img?url="+url.QueryEscape(u)),
		"400":       do(t, p, http.MethodGet, "/img"),
		"403":       get(t, p, "http://cdn.example/a.png"),
		"405":       do(t, p, http.MethodPost, "/img"),
		"502":       get(t, p, o.URL+"/missing"),
		"bad range": get(t, p, u, "Range", "bytes=999-"),
	} {
		assertSafeHeaders(t, rec.Result(), name)
	}
}
