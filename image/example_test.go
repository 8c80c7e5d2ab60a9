package image_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/synspirit/tiercache/image"
	"github.com/synspirit/tiercache/tiered"
)

func ExampleCache() {
	ctx := context.Background()
	c, err := tiered.New(ctx, tiered.Options{RedisURL: "redis://localhost:6379/0", KeyPrefix: "synspirit:"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	imgs := image.New(c, image.Options{}) // 24 h TTL, 10 MiB max, L1 up to 256 KiB
	const u = "https://cdn.example.com/cat.png"
	var png []byte // the image's bytes
	if err := imgs.Set(ctx, u, png, "image/png", time.Hour); err != nil {
		log.Print(err) // errors.Is(err, image.ErrTooLarge) for an oversized image
	}
	img, err := imgs.Get(ctx, u)
	switch {
	case errors.Is(err, tiered.ErrNotFound):
		// not cached
	case err != nil:
		log.Print(err)
	default:
		log.Printf("%s, %d bytes, etag %s", img.ContentType, img.Size, img.ETag)
	}
	_ = imgs.Delete(ctx, u) // on every instance
}

func ExampleNewProxy() {
	ctx := context.Background()
	c, err := tiered.New(ctx, tiered.Options{RedisURL: "redis://localhost:6379/0", KeyPrefix: "synspirit:"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	proxy := image.NewProxy(image.New(c, image.Options{}), image.ProxyOptions{
		AllowedHosts: []string{"cdn.example.com", "*.images.example.org"},
	})
	defer proxy.Close()
	http.Handle("/proxy/image", proxy) // GET /proxy/image?url=https://cdn.example.com/cat.png
}

// An image's Redis key is the SHA-256 of its URL; its ETag is strong, from its bytes.
func ExampleKey() {
	fmt.Println(image.Key("https://cdn.example.com/a.png"))
	fmt.Println(image.ETag([]byte("png bytes")))
	// Output:
	// 6155f67efa620e76fd5fb2c42f3676aec9cba0ee554f6ad1f33773ff1d26f587
	// "d013614dc14a37ee20fe92005737ab7d"
}
