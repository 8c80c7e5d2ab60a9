// Package bench holds the benchmarks of every hot path of tiercache, side by side with what
// users would pick instead. It is its own module (joined to the root by go.work, with a
// replace) so that peer libraries never reach a user's go.sum.
//
// One benchmark per scenario, one sub-benchmark per contender, most of them in a Serial and
// a Parallel variant: BenchmarkDataL1Hit, BenchmarkDataL2Hit, BenchmarkDataMissLoad,
// BenchmarkDataSet, BenchmarkDataDeleteReread, BenchmarkDataZipf, BenchmarkDataZipfBusy,
// BenchmarkDataScale, BenchmarkDataInvalidation, BenchmarkDataBatch (a page of 100 keys),
// BenchmarkDataL1HitTagged (the data path), BenchmarkL1Size (what
// holding 10k, 100k and 1M entries costs in heap, GC CPU and hit latency), BenchmarkCounter*
// and BenchmarkImageProxyHit. The contenders are go-redis/cache v9, go-redis v9's own
// client-side cache, rueidis by hand and with DoCache, and in-process floors (ristretto and
// sync.Map, each holding the value and, in -pointer rows, a pointer to it). Every benchmark
// starts its own redis-server (internal/redistest) and works with any -benchtime, 100x
// included.
//
// Run once:
//
//	go test -run '^$' -bench . -benchmem ./bench/
//
// Take the published numbers (medians of -count runs; writes bench/RESULTS.md,
// bench/results.svg, bench/results.txt and prints the README's headline table):
//
//	go run ./bench/cmd/report [-count 5] [-bench regexp] [-benchtime 1s]
package bench
