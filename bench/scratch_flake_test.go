package bench

import (
	"context"
	"testing"

	"go.uber.org/zap"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

func BenchmarkScratchFlake(b *testing.B) {
	s := redistest.Start(b)
	ctx := context.Background()
	lg, _ := zap.NewDevelopment()
	c := newTiered(b, s, func(o *tiered.Options) { o.Logger = lg })
	g := tiered.NewGroup[*Article](c, "data:articles", longTTL)
	if err := g.Set(ctx, "123", &sample); err != nil {
		b.Fatal(err)
	}
	warmL1(b, c, g, "123")
	b.SetParallelism(dataParallelism)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := checkArticlePointer(g.Get(ctx, "123")); err != nil {
				b.Error(err)
				return
			}
		}
	})
	st := c.Stats()
	b.Logf("flushes %d breaker opens %d", st.Flushes, st.BreakerOpens)
}
