// Package examples holds runnable programs that use tiercache: demo (two cache instances in
// one process, run with `go run ./examples/demo`) and webapp (the original site's cache use
// as a net/http service on SQLite). It is its own module so that their dependencies never
// reach a user's go.sum.
package examples
