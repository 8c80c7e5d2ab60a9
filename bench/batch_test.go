package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

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
//
// rueidis runs on one connection (PipelineMultiplex -1) so that a PING after the writer's SETs
// proves its invalidations arrived. l1hits/op is what each contender actually served from
// process memory, and reads/op the Redis commands it sent (tiercache: GETRANGE and PTTL per
// key, in one pipeline). jetcache-go, whose MGet is the closest peer in Go, is not on the Go
// module proxy (403), so it is not measured.
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
		if len(m) != len(keys) {
			return fmt.Errorf("%w: %d of %d values", errWrongValue, len(m), len(keys))
		}
		for _, a := range m {
			if err := checkArticle(a, nil); err != nil {
				return err
			}
		}
		return nil
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
