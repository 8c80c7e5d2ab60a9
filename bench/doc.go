// Package bench holds the benchmarks of every hot path of tiercache, side by side with what
// users would pick instead. It is its own module (joined to the root by go.work, with a
// replace) so that peer libraries never reach a user's go.sum.
//
// Run: go test -run '^$' -bench . -benchmem ./bench/
package bench
