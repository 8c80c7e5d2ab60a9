package image

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"mime"
	"strings"
)

// The content half of the proxy's safety: only raster images, recognised by their bytes, are
// stored and served. A raster format has no script and no markup, so an image served under
// the site's own origin cannot run anything there, whatever type it was stored with.

// rasterTypes are the accepted formats' media types and their aliases, mapped to the type
// the cache stores and the proxy sends.
var rasterTypes = map[string]string{
	"image/png": "image/png", "image/x-png": "image/png", "image/apng": "image/png",
	"image/jpeg": "image/jpeg", "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg",
	"image/gif":  "image/gif",
	"image/webp": "image/webp",
	"image/avif": "image/avif",
	"image/bmp":  "image/bmp", "image/x-bmp": "image/bmp", "image/x-ms-bmp": "image/bmp",
	"image/x-icon": "image/x-icon", "image/vnd.microsoft.icon": "image/x-icon", "image/ico": "image/x-icon",
	"image/icon": "image/x-icon",
}

// rasterFormats names the formats the cache accepts and the proxy serves.
const rasterFormats = "PNG, JPEG, GIF, WebP, AVIF, BMP and ICO"

// sniffRaster returns the media type of b when its first bytes are those of an accepted
// raster format. It reads at most the first few hundred bytes.
func sniffRaster(b []byte) (contentType string, ok bool) {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return "image/png", true
	case bytes.HasPrefix(b, []byte("\xff\xd8\xff")):
		return "image/jpeg", true
	case bytes.HasPrefix(b, []byte("GIF87a")), bytes.HasPrefix(b, []byte("GIF89a")):
		return "image/gif", true
	case len(b) >= 16 && string(b[0:4]) == "RIFF" && string(b[8:15]) == "WEBPVP8":
		return "image/webp", true
	case isAVIF(b):
		return "image/avif", true
	case isBMP(b):
		return "image/bmp", true
	case isICO(b):
		return "image/x-icon", true
	}
	return "", false
}

// isAVIF recognises an ISO BMFF file whose leading ftyp box names the AVIF brand (avif, or
// avis for a sequence) as its major brand or a compatible one.
func isAVIF(b []byte) bool {
	if len(b) < 16 || string(b[4:8]) != "ftyp" {
		return false
	}
	size := binary.BigEndian.Uint32(b[0:4])
	if size < 16 || size > 512 || size%4 != 0 || int(size) > len(b) {
		return false
	}
	for i := 8; i < int(size); i += 4 {
		if i == 12 {
			continue // the minor version, not a brand
		}
		if brand := string(b[i : i+4]); brand == "avif" || brand == "avis" {
			return true
		}
	}
	return false
}

// isBMP recognises a Windows bitmap: "BM" and a DIB header of a known size.
func isBMP(b []byte) bool {
	if len(b) < 18 || b[0] != 'B' || b[1] != 'M' {
		return false
	}
	switch binary.LittleEndian.Uint32(b[14:18]) {
	case 12, 40, 52, 56, 64, 108, 124: // BITMAPCOREHEADER to BITMAPV5HEADER
		return true
	}
	return false
}

// isICO recognises a Windows icon: reserved 0, type 1, at least one image, and a first
// directory entry whose reserved byte is 0.
func isICO(b []byte) bool {
	return len(b) >= 6+16 && b[0] == 0 && b[1] == 0 && b[2] == 1 && b[3] == 0 &&
		binary.LittleEndian.Uint16(b[4:6]) > 0 && b[6+3] == 0
}

// acceptedType returns the type Set stores for data declared as contentType: the type its
// bytes show. contentType may be empty or a generic binary type; otherwise it must name the
// same format. The error wraps ErrNotImage.
func acceptedType(data []byte, contentType string) (string, error) {
	sniffed, _ := sniffRaster(data)
	declared := ""
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return "", fmt.Errorf("%w: content type %q does not parse", ErrNotImage, contentType)
		}
		switch mt {
		case "application/octet-stream", "binary/octet-stream":
		default:
			var known bool
			if declared, known = rasterTypes[mt]; !known {
				return "", fmt.Errorf("%w: content type %s is not one of %s", ErrNotImage, mt, rasterFormats)
			}
		}
	}
	switch {
	case sniffed == "":
		return "", fmt.Errorf("%w: the bytes are not %s", ErrNotImage, orList(rasterFormats))
	case declared != "" && declared != sniffed:
		return "", fmt.Errorf("%w: content type %s, but the bytes are %s", ErrNotImage, contentType, sniffed)
	}
	return sniffed, nil
}

// orList turns "A, B and C" into "A, B or C".
func orList(s string) string { return strings.Replace(s, " and ", " or ", 1) }
