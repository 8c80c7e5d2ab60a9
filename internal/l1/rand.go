package l1

import _ "unsafe" // go:linkname

// cheaprand is the runtime's per-thread random number generator for sampling decisions (wyrand
// on the thread's own state: ~2 ns, no shared write), which the hot path uses to choose its
// samples and counter shards; math/rand/v2's ChaCha8 took 5 ns, a sixth of a hit. The runtime
// lets packages reach it by linkname and promises to keep its signature (go.dev/issue/67401);
// ristretto reaches its neighbours the same way.
//
//go:linkname cheaprand runtime.cheaprand
func cheaprand() uint32
