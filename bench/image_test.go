package bench

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/synspirit/tiercache/image"
	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// BenchmarkImageProxyHit serves one 50 KiB image through the image proxy: from L1, from
// Redis (L1 limit below the image's size), and, as the floor, the same bytes from memory with
// http.ServeContent. Target: tiercache-L1 at most 1.3× the floor.
func BenchmarkImageProxyHit(b *testing.B) {
	const imgURL = "http://127.0.0.1:1/bench.png"
	data := bytes.Repeat([]byte{0xAB}, 50<<10)
	copy(data, "\x89PNG\r\n\x1a\n")
	req := httptest.NewRequest(http.MethodGet, "/img?url="+url.QueryEscape(imgURL), nil)
	s := redistest.Start(b)

	run := func(b *testing.B, h http.Handler) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || rec.Body.Len() != len(data) {
				b.Fatalf("status %d, %d bytes: %s", rec.Code, rec.Body.Len(), rec.Body.Bytes()[:min(rec.Body.Len(), 200)])
			}
		}
	}
	proxy := func(b *testing.B, l1Max int64, wantL1 bool) http.Handler {
		tc, err := tiered.New(context.Background(), tiered.Options{RedisURL: s.URL(), KeyPrefix: "bench:"})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = tc.Close() })
		ic := image.New(tc, image.Options{L1MaxEntryBytes: l1Max})
		if err := ic.Set(context.Background(), imgURL, data, "image/png", 0); err != nil {
			b.Fatal(err)
		}
		p := image.NewProxy(ic, image.ProxyOptions{AllowedHosts: []string{"127.0.0.1:1"}, AllowPrivateNetworks: true})
		b.Cleanup(func() { _ = p.Close() })
		// Warm up until the hit comes from the wanted tier (ristretto applies fills lazily).
		deadline := time.Now().Add(5 * time.Second)
		for {
			before := tc.Stats()
			p.ServeHTTP(httptest.NewRecorder(), req)
			after := tc.Stats()
			if gotL1 := after.L1Hits > before.L1Hits; gotL1 == wantL1 && (gotL1 || after.L2Hits > before.L2Hits) {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("no hit from the wanted tier (L1 %v)", wantL1)
			}
			time.Sleep(time.Millisecond)
		}
		return p
	}

	b.Run("tiercache-L1", func(b *testing.B) { run(b, proxy(b, 0, true)) })
	b.Run("tiercache-L2", func(b *testing.B) { run(b, proxy(b, 16<<10, false)) })
	b.Run("floor-ServeContent", func(b *testing.B) {
		run(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/png")
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
		}))
	})
}
