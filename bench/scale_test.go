package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// BenchmarkDataScale runs 1, 4 and 16 instances on one redis-server (sub-benchmarks
// instances=N), each its own tiered.Cache (its own connections, its own tracking listener and
// bus subscription), all with one group of 5,000 articles, under one fixed mix: scaleReadRate
// reads a second (the timed operations, Zipf(s=1.1), from dataParallelism×GOMAXPROCS
// goroutines, each taking the instances in turn) and scaleWriteRate writes a second in the
// background (keys Zipf-distributed like the reads, spread over the instances in turn). The
// same traffic, on more instances. Each instance reads every key into its L1 (scaleL1Bytes,
// room for all) before the timed run, so that its misses come from invalidations.
//
// Both rates are paced (bgLoad.tokens), so ns/op is 1 s ÷ scaleReadRate when the instances
// keep up, and there is no Serial or Parallel mode. Unpaced, the mix would change with the
// number of instances (one goroutine reads 500k/s from one instance's L1, 12k/s from 16 whose
// L1s the writes keep emptying), and readers that never block starve the process's network
// goroutines: with one instance, 99% L1 hits from 32 goroutines, its rare Redis reads wait
// past their 100 ms Timeout.
//
//	redis-cpu-ms/1k-writes  redis-server's CPU time during the run (INFO cpu: used_cpu_sys +
//	                        used_cpu_user) ÷ writes/1000: everything Redis did, the reads that
//	                        missed L1, the instances' own PINGs and the invalidation fan-out
//	                        included
//	invalidations/write     tracking invalidations all instances received
//	                        (Σ Stats().Invalidations.Tracking) ÷ writes: every write reaches
//	                        every instance that tracks the group, the writer's own listener too
//	l1-hit-ratio            L1 hits ÷ lookups over all instances (each takes the same share of
//	                        the reads, so this is also the mean of their ratios)
//	writes/s                the background write rate reached during the run
//
// writes/s and the per-write metrics need at least minWritesPerMetric writes in the run, which -benchtime
// 100x (5 ms of reads) does not give: there it only proves the set-up works.
func BenchmarkDataScale(b *testing.B) {
	s := redistest.Start(b)
	ctx := context.Background()
	rc := newRueidisClient(b, s, false)
	// The keys written, Zipf-distributed, from one seeded generator: the writers index it by
	// their sequence number.
	z := rand.NewZipf(rand.New(rand.NewPCG(0, 0x3717e5)), scaleS, 1, scaleKeys-1)
	writeKeys := make([]int, 1<<16)
	for i := range writeKeys {
		writeKeys[i] = int(z.Uint64())
	}
	base := sample
	base.ID, base.Likes = 0, 0

	for _, n := range []int{1, 4, 16} {
		b.Run("instances="+strconv.Itoa(n), func(b *testing.B) {
			cs := make([]*tiered.Cache, n)
			gs := make([]*tiered.Group[Article], n)
			for i := range cs {
				cs[i] = newTiered(b, s, func(o *tiered.Options) { o.L1MaxBytes, o.Timeout = scaleL1Bytes, busyTimeout })
				gs[i] = tiered.NewGroup[Article](cs[i], "scale", longTTL)
			}
			// Again for each instance count: the writes of the previous one changed them.
			populateTiered(b, rc, gs[0], scaleKeys, base)
			for i := range cs {
				warmL1(b, cs[i], gs[i], "0") // the group's values go to L1 once its prefix is tracked
			}
			forEachConcurrently(b, n*scaleKeys, func(_, i int) error {
				_, err := gs[i%n].Get(ctx, zipfKeyNames[i/n])
				return err
			})

			load := newBgLoad(b)
			load.run(scaleWriteRate, 8, func(ctx context.Context, seq uint64) error {
				a := sample
				a.ID, a.Likes = writeKeys[seq%uint64(len(writeKeys))], int64(seq)
				return gs[seq%uint64(n)].Set(ctx, zipfKeyNames[a.ID], a)
			})
			// The readers: each read waits for a token of the read rate.
			jobs := make(chan struct{}, dataParallelism)
			var readers sync.WaitGroup
			var readErr atomic.Value
			for w := range dataParallelism * runtime.GOMAXPROCS(0) {
				readers.Go(func() {
					z := rand.NewZipf(rand.New(rand.NewPCG(uint64(w)+1, 0x5ca1e)), scaleS, 1, scaleKeys-1)
					inst := w
					for range jobs {
						inst++
						if _, err := gs[inst%n].Get(ctx, zipfKeyNames[z.Uint64()]); err != nil {
							readErr.Store(err)
						}
					}
				})
			}
			b.ReportAllocs()
			report := scaleProbe(rc, cs, load)()
			reads := load.tokens(scaleReadRate)
			for b.Loop() {
				<-reads
				jobs <- struct{}{}
			}
			close(jobs)
			readers.Wait()
			if err, ok := readErr.Load().(error); ok {
				b.Fatal(err)
			}
			report(b)
		})
	}
}

const (
	scaleKeys = 5_000
	scaleS    = 1.1
	// scaleReadRate and scaleWriteRate are the totals a second, whatever the number of
	// instances: 5% writes, as in BenchmarkDataZipf.
	scaleReadRate  = 20_000
	scaleWriteRate = 1_000
	// scaleL1Bytes holds every key (~420 B each in tiercache's accounting) with room to spare.
	scaleL1Bytes = 4 << 20
)

// scaleProbe reports Redis's CPU and the instances' invalidations per write, the mean L1 hit
// ratio and the write rate of a run.
func scaleProbe(rc rueidis.Client, cs []*tiered.Cache, load *bgLoad) probe {
	sum := func() (hits, misses, tracking uint64) {
		for _, c := range cs {
			st := c.Stats()
			hits, misses, tracking = hits+st.L1Hits, misses+st.L1Misses, tracking+st.Invalidations.Tracking
		}
		return hits, misses, tracking
	}
	return func() func(*testing.B) {
		cpu0, err0 := redisCPU(rc)
		h0, m0, t0 := sum()
		w0 := load.done.Load()
		start := time.Now()
		return func(b *testing.B) {
			elapsed := time.Since(start)
			w := load.done.Load() - w0
			h1, m1, t1 := sum()
			cpu1, err1 := redisCPU(rc)
			if n := (h1 - h0) + (m1 - m0); n > 0 {
				b.ReportMetric(float64(h1-h0)/float64(n), "l1-hit-ratio")
			}
			if w < minWritesPerMetric {
				return
			}
			b.ReportMetric(float64(w)/elapsed.Seconds(), "writes/s")
			b.ReportMetric(float64(t1-t0)/float64(w), "invalidations/write")
			if err := errors.Join(err0, err1); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric((cpu1-cpu0)*1000/(float64(w)/1000), "redis-cpu-ms/1k-writes")
		}
	}
}

// redisCPU is the CPU time redis-server has used so far, in seconds (INFO cpu:
// used_cpu_sys + used_cpu_user, all its threads).
func redisCPU(rc rueidis.Client) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := rc.Do(ctx, rc.B().Info().Section("cpu").Build()).ToAny()
	if err != nil {
		return 0, err
	}
	info, ok := v.(string) // RESP3 sends INFO as a verbatim string, which ToString refuses
	if !ok {
		return 0, fmt.Errorf("INFO cpu: reply is %T", v)
	}
	var total float64
	found := 0
	for line := range strings.Lines(info) {
		k, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (k != "used_cpu_sys" && k != "used_cpu_user") {
			continue
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return 0, fmt.Errorf("INFO cpu: %s: %w", k, err)
		}
		total += f
		found++
	}
	if found != 2 {
		return 0, fmt.Errorf("INFO cpu: no used_cpu_sys and used_cpu_user in %q", info)
	}
	return total, nil
}
