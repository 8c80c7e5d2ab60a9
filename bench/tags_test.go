package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// BenchmarkDataL1HitTagged is BenchmarkDataL1Hit for values carrying 0, 1 and 3 tags: a hit
// of a tagged value compares one pointer per tag (an atomic load) against its tag's current
// version. Target: a tagged hit costs at most 1.2× an untagged one.
func BenchmarkDataL1HitTagged(b *testing.B) {
	s := redistest.Start(b)
	c := newTiered(b, s)
	ctx := context.Background()
	for _, n := range []int{0, 1, 3} {
		g := tiered.NewGroup[Article](c, fmt.Sprintf("tagged%d", n), longTTL)
		tags := make([]string, n)
		for i := range tags {
			tags[i] = fmt.Sprintf("article:%d:%d", sample.ID, i)
		}
		key := "k"
		if err := g.Set(ctx, key, sample, tiered.Tags(tags...)); err != nil {
			b.Fatal(err)
		}
		warmTiered(b, c, g, key)
		b.Run(fmt.Sprintf("tags=%d", n), func(b *testing.B) {
			runSerialAndParallel(b, func(ctx context.Context) error { return checkArticle(g.Get(ctx, key)) })
		})
	}
}

// warmTiered reads key until an L1 hit serves it.
func warmTiered(b *testing.B, c *tiered.Cache, g *tiered.Group[Article], key string) {
	b.Helper()
	for range 1000 {
		before := c.Stats().L1Hits
		if _, err := g.Get(context.Background(), key); err != nil {
			b.Fatal(err)
		}
		if c.Stats().L1Hits > before {
			return
		}
	}
	b.Fatal("the key never reached L1")
}
