package tiered_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

// GroupStats counts each group's own lookups, Redis reads and loads, and the groups' sums
// are the cache's.
func TestGroupStats(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	ctx := context.Background()
	a := tiered.NewGroup[string](c, "a", time.Minute)
	b := tiered.NewGroup[string](c, "b", time.Minute)
	require.Equal(t, map[string]tiered.GroupStats{"a": {}, "b": {}}, c.GroupStats())

	// a: a load (L1 miss, L2 miss), then L1 hits.
	v, err := a.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v", nil })
	require.NoError(t, err)
	require.Equal(t, "v", v)
	warm(t, c, a, "k")
	hitsBefore := c.GroupStats()["a"].L1Hits
	for range 5 {
		_, err := a.Get(ctx, "k")
		require.NoError(t, err)
	}
	// b: a failed load, a miss in Redis, a value read from Redis.
	_, err = b.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "", errors.New("boom") })
	require.Error(t, err)
	_, err = b.Get(ctx, "none")
	require.ErrorIs(t, err, tiered.ErrNotFound)

	gs := c.GroupStats()
	ga, gb := gs["a"], gs["b"]
	require.Equal(t, hitsBefore+5, ga.L1Hits, "a's L1 hits (ExactL1Stats)")
	require.Equal(t, uint64(1), ga.Loads)
	require.Zero(t, ga.LoadErrors)
	require.GreaterOrEqual(t, ga.L1Misses, uint64(1))
	require.GreaterOrEqual(t, ga.L2Misses, uint64(1))
	require.Zero(t, gb.L1Hits)
	require.Equal(t, uint64(1), gb.Loads)
	require.Equal(t, uint64(1), gb.LoadErrors)
	require.Equal(t, uint64(2), gb.L2Misses, "the failed load's read and Get's")
	require.Zero(t, gb.L2Hits)

	st := c.Stats()
	require.Equal(t, st.L1Hits, ga.L1Hits+gb.L1Hits)
	require.Equal(t, st.L1Misses, ga.L1Misses+gb.L1Misses)
	require.Equal(t, st.L2Hits, ga.L2Hits+gb.L2Hits)
	require.Equal(t, st.L2Misses, ga.L2Misses+gb.L2Misses)
	require.Equal(t, st.Loads, ga.Loads+gb.Loads)
	require.Equal(t, st.LoadErrors, ga.LoadErrors+gb.LoadErrors)

	// Two groups of one name share their counters.
	a2 := tiered.NewGroup[string](c, "a", time.Minute)
	_, err = a2.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, ga.L1Hits+1, c.GroupStats()["a"].L1Hits)
}

type recordingObserver struct {
	mu    sync.Mutex
	loads []string         // group names
	lerrs []error          // the loads' errors
	calls map[string]int   // command names
	errs  map[string]error // the last error by command
}

func (o *recordingObserver) LoadDone(group string, d time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.loads = append(o.loads, group)
	o.lerrs = append(o.lerrs, err)
}

func (o *recordingObserver) RedisCallDone(command string, d time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls[command]++
	o.errs[command] = err
}

func (o *recordingObserver) snapshot() (loads []string, calls map[string]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	calls = make(map[string]int, len(o.calls))
	for k, v := range o.calls {
		calls[k] = v
	}
	return append([]string(nil), o.loads...), calls
}

// Options.Observer is told of every load and of the Redis calls they make.
func TestObserver(t *testing.T) {
	s := redistest.Start(t)
	o := &recordingObserver{calls: map[string]int{}, errs: map[string]error{}}
	c := newCache(t, s, func(opts *tiered.Options) { opts.Observer = o })
	ctx := context.Background()
	g := tiered.NewGroup[string](c, "obs", time.Minute)
	// Once a value reaches L1 the group is armed, and its reads ask for the TTL too.
	require.NoError(t, g.Set(ctx, "armed", "v"))
	warm(t, c, g, "armed")

	_, err := g.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v", nil })
	require.NoError(t, err)
	_, err = g.GetOrLoad(ctx, "p", func(context.Context) (string, error) { panic("boom") })
	require.Error(t, err)
	loads, calls := o.snapshot()
	require.Equal(t, []string{"obs", "obs"}, loads)
	require.Positive(t, calls["BATCH"], "the GETRANGE+PTTL read: %v", calls)
	require.Positive(t, calls["SET"], "the loaded value's write: %v", calls)
	o.mu.Lock()
	defer o.mu.Unlock()
	require.NoError(t, o.errs["SET"])
	require.NoError(t, o.lerrs[0])
	require.ErrorAs(t, o.lerrs[1], new(*tiered.PanicError), "a panicking loader is observed with its PanicError")
}
