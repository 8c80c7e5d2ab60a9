package bench

import (
	"context"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/synspirit/tiercache/counter"
	"github.com/synspirit/tiercache/internal/redistest"
)

// The counter benchmarks compare one counter increment, and one page of 50 counter reads,
// through tiercache's counter package with the same command sent raw through rueidis (the
// client tiercache uses) and through go-redis, all against one local redis-server.

func newRueidis(b *testing.B, s *redistest.Server) rueidis.Client {
	b.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.Addr()}, DisableCache: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}

func newGoRedis(b *testing.B, s *redistest.Server) *goredis.Client {
	b.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr()})
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// parallelism multiplies GOMAXPROCS into the number of goroutines of the Parallel variants: a
// service serves many requests at once, each waiting on Redis, far more than it has CPUs.
const parallelism = 16

// runSerialAndParallel runs op once per iteration on one goroutine ("Serial") and from
// parallelism×GOMAXPROCS goroutines ("Parallel"), under context.Background.
func runSerialAndParallel(b *testing.B, op func(ctx context.Context) error) {
	runSerialAndParallelUnder(b, context.Background, op)
}

// runSerialAndParallelUnder is runSerialAndParallel with each goroutine's context made by
// newCtx, once per goroutine, before its timed loop.
func runSerialAndParallelUnder(b *testing.B, newCtx func() context.Context, op func(ctx context.Context) error) {
	b.Run("Serial", func(b *testing.B) {
		b.ReportAllocs()
		ctx := newCtx()
		for b.Loop() {
			if err := op(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(parallelism)
		b.RunParallel(func(pb *testing.PB) {
			ctx := newCtx()
			for pb.Next() {
				if err := op(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkCounterIncrement(b *testing.B) {
	s := redistest.Start(b)
	key := counter.Key{Target: "article", ID: "123", Counter: "likes"}

	b.Run("tiercache", func(b *testing.B) {
		cnt := counter.New(newRueidis(b, s), counter.Options{KeyPrefix: "tc:", Timeout: time.Second})
		runSerialAndParallel(b, func(ctx context.Context) error {
			_, err := cnt.Increment(ctx, key, 1)
			return err
		})
	})
	// The same call under a cancellable context, as from an HTTP handler: the per-call
	// deadline then needs a context.WithTimeout of its own (internal/deadline).
	// Each goroutine has a context of its own, as each request has.
	b.Run("tiercache-cancellable-ctx", func(b *testing.B) {
		cnt := counter.New(newRueidis(b, s), counter.Options{KeyPrefix: "tcc:", Timeout: time.Second})
		root, cancel := context.WithCancel(context.Background())
		b.Cleanup(cancel)
		newCtx := func() context.Context {
			ctx, cancel := context.WithCancel(root)
			b.Cleanup(cancel)
			return ctx
		}
		runSerialAndParallelUnder(b, newCtx, func(ctx context.Context) error {
			_, err := cnt.Increment(ctx, key, 1)
			return err
		})
	})
	// Cache mode (the original design's one-minute TTL) checks the counter exists first.
	b.Run("tiercache-TTL", func(b *testing.B) {
		cnt := counter.New(newRueidis(b, s), counter.Options{KeyPrefix: "tcttl:", TTL: time.Hour, Timeout: time.Second})
		if err := cnt.Set(context.Background(), key, 0, 0); err != nil {
			b.Fatal(err)
		}
		runSerialAndParallel(b, func(ctx context.Context) error {
			_, err := cnt.Increment(ctx, key, 1)
			return err
		})
	})
	b.Run("rueidis-INCRBY", func(b *testing.B) {
		c := newRueidis(b, s)
		runSerialAndParallel(b, func(ctx context.Context) error {
			return c.Do(ctx, c.B().Incrby().Key("ru:count:article:123:likes").Increment(1).Build()).Error()
		})
	})
	b.Run("go-redis-IncrBy", func(b *testing.B) {
		c := newGoRedis(b, s)
		runSerialAndParallel(b, func(ctx context.Context) error {
			return c.IncrBy(ctx, "gr:count:article:123:likes", 1).Err()
		})
	})
}

func BenchmarkCounterGetMany50(b *testing.B) {
	s := redistest.Start(b)
	const n = 50
	keys := make([]counter.Key, n)
	for i := range keys {
		keys[i] = counter.Key{Target: "article", ID: strconv.Itoa(i), Counter: "likes"}
	}
	ctx := context.Background()
	cnt := counter.New(newRueidis(b, s), counter.Options{KeyPrefix: "gm:", Timeout: time.Second})
	redisKeys := make([]string, n)
	for i, k := range keys {
		rk, err := cnt.RedisKey(k)
		if err != nil {
			b.Fatal(err)
		}
		redisKeys[i] = rk
		if i%5 != 0 { // one in five missing, as on a page with new articles
			if err := cnt.Set(ctx, k, int64(i), 0); err != nil {
				b.Fatal(err)
			}
		}
	}

	b.Run("tiercache", func(b *testing.B) {
		runSerialAndParallel(b, func(ctx context.Context) error {
			_, err := cnt.GetMany(ctx, keys)
			return err
		})
	})
	b.Run("rueidis-MGET", func(b *testing.B) {
		c := newRueidis(b, s)
		runSerialAndParallel(b, func(ctx context.Context) error {
			_, err := c.Do(ctx, c.B().Mget().Key(redisKeys...).Build()).ToArray()
			return err
		})
	})
	b.Run("go-redis-MGet", func(b *testing.B) {
		c := newGoRedis(b, s)
		runSerialAndParallel(b, func(ctx context.Context) error {
			return c.MGet(ctx, redisKeys...).Err()
		})
	})
}
