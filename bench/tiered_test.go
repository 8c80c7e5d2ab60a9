package bench

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/redis/rueidis"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// Article is a ~300-byte JSON value, the size of a typical list entry.
type Article struct {
	ID        int       `json:"id"`
	Title     string    `json:"title"`
	Author    string    `json:"author"`
	Summary   string    `json:"summary"`
	Tags      []string  `json:"tags"`
	Likes     int64     `json:"likes"`
	Published time.Time `json:"published"`
}

var sample = Article{
	ID: 123, Title: "Two tiers, one truth: caching across instances", Author: "synspirit",
	Summary: "How an in-process L1 in front of Redis stays coherent with server-assisted client-side caching and a pub/sub bus.",
	Tags:    []string{"go", "redis", "cache"}, Likes: 500, Published: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC),
}

func newTiered(b *testing.B, s *redistest.Server, mod ...func(*tiered.Options)) *tiered.Cache {
	b.Helper()
	o := tiered.Options{RedisURL: s.URL(), KeyPrefix: "bench:"}
	for _, f := range mod {
		f(&o)
	}
	c, err := tiered.New(context.Background(), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// warmL1 reads key until it is served from L1.
func warmL1[T any](b *testing.B, c *tiered.Cache, g *tiered.Group[T], key string) {
	b.Helper()
	for i := 0; i < 1000; i++ {
		before := c.Stats().L1Hits
		if _, err := g.Get(context.Background(), key); err != nil {
			b.Fatal(err)
		}
		if c.Stats().L1Hits > before {
			return
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatal("value never reached L1")
}

func BenchmarkL1Hit(b *testing.B) {
	s := redistest.Start(b)
	ctx := context.Background()

	c := newTiered(b, s)
	g := tiered.NewGroup[Article](c, "data:articles", time.Hour)
	if err := g.Set(ctx, "123", sample); err != nil {
		b.Fatal(err)
	}
	warmL1(b, c, g, "123")
	load := func(context.Context) (Article, error) { return sample, nil }

	rc, err := ristretto.NewCache(&ristretto.Config[string, Article]{NumCounters: 1e5, MaxCost: 64 << 20, BufferItems: 64})
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	rc.Set("data:articles:123", sample, 300)
	rc.Wait()

	var sm sync.Map
	sm.Store("data:articles:123", sample)

	var sink Article
	run := func(name string, get func() Article) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sink = get()
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var local Article
				for pb.Next() {
					local = get()
				}
				_ = local
			})
		})
	}
	run("tiercache-Get", func() Article { v, _ := g.Get(ctx, "123"); return v })
	run("tiercache-GetOrLoad", func() Article { v, _ := g.GetOrLoad(ctx, "123", load); return v })
	run("ristretto-Get", func() Article { v, _ := rc.Get("data:articles:123"); return v })
	run("sync.Map-Load", func() Article { v, _ := sm.Load("data:articles:123"); return v.(Article) })
	_ = sink
}

func BenchmarkL2Hit(b *testing.B) {
	s := redistest.Start(b)
	ctx := context.Background()
	c := newTiered(b, s, func(o *tiered.Options) { o.DisableL1 = true })
	g := tiered.NewGroup[Article](c, "data:articles", time.Hour)
	if err := g.Set(ctx, "123", sample); err != nil {
		b.Fatal(err)
	}
	raw := newRueidis(b, s)
	js, _ := json.Marshal(sample)
	if err := raw.Do(ctx, raw.B().Set().Key("raw:123").Value(string(js)).Build()).Error(); err != nil {
		b.Fatal(err)
	}
	run := func(name string, get func() error) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := get(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := get(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	run("tiercache", func() error { _, err := g.Get(ctx, "123"); return err })
	run("rueidis-GET+json", func() error {
		bs, err := raw.Do(ctx, raw.B().Get().Key("raw:123").Build()).AsBytes()
		if err != nil {
			return err
		}
		var a Article
		return json.Unmarshal(bs, &a)
	})
}

func BenchmarkMissAndLoad(b *testing.B) {
	s := redistest.Start(b)
	ctx := context.Background()
	c := newTiered(b, s)
	g := tiered.NewGroup[Article](c, "data:miss", time.Minute)
	load := func(context.Context) (Article, error) { return sample, nil }
	b.Run("tiercache", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if _, err := g.GetOrLoad(ctx, strconv.Itoa(i), load); err != nil {
				b.Fatal(err)
			}
		}
	})
	raw := newRueidis(b, s)
	b.Run("rueidis-GET+SET+json", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			key := "raw:miss:" + strconv.Itoa(i)
			err := raw.Do(ctx, raw.B().Get().Key(key).Build()).Error()
			if !rueidis.IsRedisNil(err) {
				b.Fatal(err)
			}
			a, _ := load(ctx)
			js, _ := json.Marshal(a)
			if err := raw.Do(ctx, raw.B().Set().Key(key).Value(string(js)).Ex(time.Minute).Build()).Error(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSet(b *testing.B) {
	s := redistest.Start(b)
	ctx := context.Background()
	c := newTiered(b, s)
	g := tiered.NewGroup[Article](c, "data:set", time.Minute)
	b.Run("tiercache", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := g.Set(ctx, "123", sample); err != nil {
				b.Fatal(err)
			}
		}
	})
	raw := newRueidis(b, s)
	b.Run("rueidis-SET+json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			js, _ := json.Marshal(sample)
			if err := raw.Do(ctx, raw.B().Set().Key("raw:set").Value(string(js)).Ex(time.Minute).Build()).Error(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
