package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	jetcache "github.com/synspirit/tiercache/bench/internal/jetcache"
	jetjson "github.com/synspirit/tiercache/bench/internal/jetcache/encoding/json"
	"github.com/synspirit/tiercache/bench/internal/jetcache/local"
	"github.com/synspirit/tiercache/bench/internal/jetcache/remote"
	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// BenchmarkDataBatch reads a page of 100 keys (100 Articles, as a list page shows them) of
// which l1hits% are in the reader's process memory and the rest in Redis only: another
// instance has just rewritten them, so the reader's local copies were invalidated. Before
// each timed read the writer rewrites the keys that must miss (a window that moves along the
// page), and the reader is given time to hear of it; the timed read is one page. Contenders:
//
//	tiercache-GetOrLoadMany       one call: L1, then one pipeline to Redis, the loader for none
//	tiercache-GetOrLoad-x100      100 sequential GetOrLoad calls into a map: a page without batches
//	rueidis-MGetCache+JSON        rueidis's client-side cache: MGetCache, then encoding/json per key
//	rueidis-MGet+JSON             the floor by hand: one MGET, encoding/json per key, no local tier
//	jetcache-go-MGet              jetcache-go's T.MGet: its local TinyLFU, then one pipeline of GETs, the loader for none
//
// rueidis runs on one connection (PipelineMultiplex -1) so that a PING after the writer's SETs
// proves its invalidations arrived. l1hits/op is what each contender actually served from
// process memory, and reads/op the Redis commands it sent (tiercache: GETRANGE and PTTL per
// key, in one pipeline). jetcache-go, whose MGet is the closest peer in Go, is not on the Go
// module proxy (403): its source is vendored in internal/jetcache (see the README there). Its
// local tier holds the encoded bytes (JSON here, as tiercache's) and decodes them on every
// hit; it has no cross-instance invalidation of its own, only a hook (SyncLocal) that hands
// each write's keys to a function the user supplies: here the writer publishes them on a Redis
// channel, and the reader, subscribed, drops them from its local tier.
func BenchmarkDataBatch(b *testing.B) {
	s := redistest.Start(b)
	for _, hits := range []int{100, 90, 50, 0} {
		b.Run(fmt.Sprintf("l1hits=%d%%", hits), func(b *testing.B) {
			for _, c := range batchContenders {
				b.Run(c.name, func(b *testing.B) { benchBatch(b, s, c.open(b, s), hits) })
			}
		})
	}
}

const batchSize = 100

func batchKeys(prefix string) []string {
	ks := make([]string, batchSize)
	for i := range ks {
		ks[i] = prefix + strconv.Itoa(i)
	}
	return ks
}

// checkPage fails unless the page m holds n articles, each the right one.
func checkPage[K comparable](m map[K]Article, n int) error {
	if len(m) != n {
		return fmt.Errorf("%w: %d of %d values", errWrongValue, len(m), n)
	}
	for _, a := range m {
		if err := checkArticle(a, nil); err != nil {
			return err
		}
	}
	return nil
}

// batchReader is one contender on a page of batchSize keys.
type batchReader struct {
	// read reads the page, failing on a missing or wrong value.
	read func(ctx context.Context) error
	// rewrite has another client rewrite keys[i] for i in miss, and returns once the reader
	// has heard of it.
	rewrite func(ctx context.Context, miss []int) error
	// l1Hits is how many reads the reader has served from process memory so far.
	l1Hits func() uint64
}

var batchContenders = []struct {
	name string
	open func(b *testing.B, s *redistest.Server) batchReader
}{
	{"tiercache-GetOrLoadMany", func(b *testing.B, s *redistest.Server) batchReader {
		return openTieredBatch(b, s, true)
	}},
	{"tiercache-GetOrLoad-x100", func(b *testing.B, s *redistest.Server) batchReader {
		return openTieredBatch(b, s, false)
	}},
	{"rueidis-MGetCache+JSON", func(b *testing.B, s *redistest.Server) batchReader { return openRueidisBatch(b, s, true) }},
	{"rueidis-MGet+JSON", func(b *testing.B, s *redistest.Server) batchReader { return openRueidisBatch(b, s, false) }},
	{"jetcache-go-MGet", openJetcacheBatch},
}

func benchBatch(b *testing.B, s *redistest.Server, r batchReader, hits int) {
	ctx := context.Background()
	if err := r.read(ctx); err != nil { // the page is in every tier the contender has
		b.Fatal(err)
	}
	if err := r.read(ctx); err != nil {
		b.Fatal(err)
	}
	missN := batchSize * (100 - hits) / 100
	miss := make([]int, missN)
	next := 0
	before, cmdsBefore := r.l1Hits(), redisCommands(b, s)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if missN > 0 {
			b.StopTimer()
			for i := range miss {
				miss[i] = (next + i) % batchSize
			}
			next += missN
			if err := r.rewrite(ctx, miss); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		if err := r.read(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(r.l1Hits()-before)/float64(b.N), "l1hits/op")
	if missN == 0 { // the rewrites' own commands would be counted too
		b.ReportMetric(float64(redisCommands(b, s)-cmdsBefore)/float64(b.N), "redis-cmds/op")
	}
}

// redisCommands is Redis's count of commands processed so far.
func redisCommands(b *testing.B, s *redistest.Server) uint64 {
	b.Helper()
	rc := newRueidisClient(b, s, false)
	defer rc.Close()
	v, err := rc.Do(context.Background(), rc.B().Info().Section("stats").Build()).ToAny()
	if err != nil {
		b.Fatal(err)
	}
	info, _ := v.(string) // RESP3 sends INFO as a verbatim string, which ToString refuses
	for _, line := range strings.Split(info, "\r\n") {
		if n, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			v, err := strconv.ParseUint(n, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return v
		}
	}
	b.Fatalf("INFO stats: no total_commands_processed in %q", info)
	return 0
}

func openTieredBatch(b *testing.B, s *redistest.Server, batch bool) batchReader {
	b.Helper()
	reader := newTiered(b, s, func(o *tiered.Options) { o.ExactL1Stats = true })
	writer := newTiered(b, s)
	g := tiered.NewGroup[Article](reader, "batch", longTTL)
	w := tiered.NewGroup[Article](writer, "batch", longTTL)
	keys := batchKeys("")
	ctx := context.Background()
	for _, k := range keys {
		if err := w.Set(ctx, k, sample); err != nil {
			b.Fatal(err)
		}
	}
	load := func(context.Context, []string) (map[string]Article, error) {
		return nil, fmt.Errorf("%w: the batch loader ran", errWrongValue)
	}
	read := func(ctx context.Context) error {
		m, err := g.GetOrLoadMany(ctx, keys, load)
		if err != nil {
			return err
		}
		return checkPage(m, len(keys))
	}
	if !batch {
		read = func(ctx context.Context) error {
			m := make(map[string]Article, len(keys)) // the page, as GetOrLoadMany returns it
			for _, k := range keys {
				a, err := g.GetOrLoad(ctx, k, loadSample)
				if err := checkArticle(a, err); err != nil {
					return err
				}
				m[k] = a
			}
			if len(m) != len(keys) {
				return fmt.Errorf("%w: %d of %d values", errWrongValue, len(m), len(keys))
			}
			return nil
		}
	}
	return batchReader{
		read: read,
		rewrite: func(ctx context.Context, miss []int) error {
			want := reader.Stats().Invalidations.Tracking + uint64(len(miss))
			for _, i := range miss {
				if err := w.Set(ctx, keys[i], sample); err != nil {
					return err
				}
			}
			// Spin rather than sleep: a reader woken from idle pays for it in the timed read.
			for deadline := time.Now().Add(time.Second); reader.Stats().Invalidations.Tracking < want; {
				if time.Now().After(deadline) {
					return fmt.Errorf("%w: the reader heard of %d of %d rewrites in a second", errWrongValue,
						len(miss)-int(want-reader.Stats().Invalidations.Tracking), len(miss))
				}
				runtime.Gosched()
			}
			return nil
		},
		l1Hits: func() uint64 { return reader.Stats().L1Hits },
	}
}

func openRueidisBatch(b *testing.B, s *redistest.Server, clientCache bool) batchReader {
	b.Helper()
	reader, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.Addr()}, DisableCache: !clientCache, PipelineMultiplex: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(reader.Close)
	writer := newRueidisClient(b, s, false)
	keys := batchKeys("bench:rueidis-batch:")
	raw, err := json.Marshal(sample)
	if err != nil {
		b.Fatal(err)
	}
	value := string(raw)
	ctx := context.Background()
	set := func(ctx context.Context, idx []int) error {
		cmds := make(rueidis.Commands, len(idx))
		for j, i := range idx {
			cmds[j] = writer.B().Set().Key(keys[i]).Value(value).Ex(longTTL).Build()
		}
		for _, r := range writer.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				return err
			}
		}
		return nil
	}
	all := make([]int, len(keys))
	for i := range all {
		all[i] = i
	}
	if err := set(ctx, all); err != nil {
		b.Fatal(err)
	}
	var hits uint64
	return batchReader{
		read: func(ctx context.Context) error {
			var m map[string]rueidis.RedisMessage
			var err error
			if clientCache {
				m, err = rueidis.MGetCache(reader, ctx, longTTL, keys)
			} else {
				m, err = rueidis.MGet(reader, ctx, keys)
			}
			if err != nil {
				return err
			}
			for _, k := range keys {
				msg, ok := m[k]
				if !ok {
					return fmt.Errorf("%w: %s missing", errWrongValue, k)
				}
				if msg.IsCacheHit() {
					hits++
				}
				bs, err := msg.AsBytes()
				if err != nil {
					return err
				}
				var a Article
				if err := checkArticle(a, json.Unmarshal(bs, &a)); err != nil {
					return err
				}
			}
			return nil
		},
		rewrite: func(ctx context.Context, miss []int) error {
			if err := set(ctx, miss); err != nil {
				return err
			}
			// The invalidations precede PING's reply on the reader's one connection.
			return reader.Do(ctx, reader.B().Ping().Build()).Error()
		},
		l1Hits: func() uint64 { return hits },
	}
}

const (
	// jetcacheBatchKey is the key jetcache-go's T joins with ":" and each id into a Redis key.
	jetcacheBatchKey = "bench:jetcache-batch"
	// jetcacheEvents is the Redis channel on which the benchmark carries jetcache-go's SyncLocal
	// events from the writer to the reader.
	jetcacheEvents = "bench:jetcache-batch:events"
)

func openJetcacheBatch(b *testing.B, s *redistest.Server) batchReader {
	b.Helper()
	ctx := context.Background()
	hits := new(jetcacheLocalHits)
	rdb := newGoRedisClient(b, s)
	reader := newJetcache(b, rdb, "bench-batch-reader", hits)
	g := jetcache.NewT[int, Article](reader)

	// The reader drops from its local tier every key that the writer's events name.
	var handled atomic.Uint64
	var subErr, pubErr atomic.Pointer[error]
	sub := rdb.Subscribe(ctx, jetcacheEvents)
	if _, err := sub.Receive(ctx); err != nil { // the subscription is in place
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := sub.ReceiveMessage(ctx) // fails once the cleanup closes sub
			if err == nil {
				var e jetcache.Event
				if err = json.Unmarshal([]byte(msg.Payload), &e); err == nil {
					for _, k := range e.Keys {
						reader.DeleteFromLocalCache(k)
					}
					handled.Add(uint64(len(e.Keys)))
					continue
				}
			}
			subErr.Store(&err)
			return
		}
	}()
	b.Cleanup(func() {
		_ = sub.Close()
		<-done
	})

	// The writer, another instance, publishes the events of its writes (one per T.Set).
	wdb := newGoRedisClient(b, s)
	writer := newJetcache(b, wdb, "bench-batch-writer", new(jetcacheLocalHits),
		jetcache.WithSyncLocal(true),
		jetcache.WithEventHandler(func(e *jetcache.Event) {
			bs, err := json.Marshal(e)
			if err == nil {
				err = wdb.Publish(context.Background(), jetcacheEvents, bs).Err()
			}
			if err != nil {
				pubErr.Store(&err)
			}
		}))
	w := jetcache.NewT[int, Article](writer)

	// heard waits until the reader has handled want keys in all.
	heard := func(want uint64) error {
		// Spin rather than sleep: a reader woken from idle pays for it in the timed read.
		for deadline := time.Now().Add(time.Second); handled.Load() < want; {
			if time.Now().After(deadline) {
				err := fmt.Errorf("%w: the reader handled %d of %d keys in a second", errWrongValue, handled.Load(), want)
				for _, e := range []*error{pubErr.Load(), subErr.Load()} {
					if e != nil {
						err = errors.Join(err, *e)
					}
				}
				return err
			}
			runtime.Gosched()
		}
		return nil
	}
	ids := make([]int, batchSize)
	for i := range ids {
		ids[i] = i
		if err := w.Set(ctx, jetcacheBatchKey, i, sample); err != nil {
			b.Fatal(err)
		}
	}
	if err := heard(batchSize); err != nil {
		b.Fatal(err)
	}

	var loadErr error
	load := func(_ context.Context, missing []int) (map[int]Article, error) {
		loadErr = fmt.Errorf("%w: the batch loader ran for %d ids", errWrongValue, len(missing))
		return nil, loadErr
	}
	return batchReader{
		read: func(ctx context.Context) error {
			loadErr = nil
			m := g.MGet(ctx, jetcacheBatchKey, ids, load) // MGet logs its errors and returns what it has
			if loadErr != nil {
				return loadErr
			}
			return checkPage(m, len(ids))
		},
		rewrite: func(ctx context.Context, miss []int) error {
			want := handled.Load() + uint64(len(miss))
			for _, i := range miss {
				if err := w.Set(ctx, jetcacheBatchKey, ids[i], sample); err != nil {
					return err
				}
			}
			return heard(want)
		},
		l1Hits: hits.n.Load,
	}
}

// newJetcache is a jetcache-go cache on rdb with a local TinyLFU in front (its README's
// set-up), values in JSON, hits counted by stats, closed by b.Cleanup. NewTinyLFU's size is
// ristretto's MaxCost, to which ristretto adds its own ~56 bytes per entry: tinyLFUEntries
// holds some 175 entries, more than the page's 100.
func newJetcache(b *testing.B, rdb *goredis.Client, name string, stats *jetcacheLocalHits, opts ...jetcache.Option) jetcache.Cache {
	b.Helper()
	l := local.NewTinyLFU(tinyLFUEntries, time.Minute)
	b.Cleanup(l.Close)
	c := jetcache.New(append([]jetcache.Option{
		jetcache.WithName(name),
		jetcache.WithRemote(remote.NewGoRedisV9Adapter(rdb)),
		jetcache.WithLocal(l),
		jetcache.WithCodec(jetjson.Name),
		jetcache.WithRemoteExpiry(longTTL),
		jetcache.WithStatsHandler(stats), // and not its default, which logs a summary every minute
	}, opts...)...)
	b.Cleanup(c.Close)
	return c
}

// jetcacheLocalHits is a jetcache-go stats.Handler that counts local hits and nothing else.
type jetcacheLocalHits struct{ n atomic.Uint64 }

func (h *jetcacheLocalHits) IncrLocalHit()     { h.n.Add(1) }
func (*jetcacheLocalHits) IncrHit()            {}
func (*jetcacheLocalHits) IncrMiss()           {}
func (*jetcacheLocalHits) IncrLocalMiss()      {}
func (*jetcacheLocalHits) IncrRemoteHit()      {}
func (*jetcacheLocalHits) IncrRemoteMiss()     {}
func (*jetcacheLocalHits) IncrQuery()          {}
func (*jetcacheLocalHits) IncrQueryFail(error) {}
