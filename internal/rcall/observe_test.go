package rcall_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/rcall"
	"github.com/synspirit/tiercache/internal/redistest"
)

type observed struct {
	name string
	d    time.Duration
	err  error
}

// Observe is told of each call that was sent, with its name, duration and error; a nil reply
// is an answer; callers derived with With keep the observer; refused calls are not observed.
func TestObserve(t *testing.T) {
	s := redistest.Start(t)
	var (
		mu  sync.Mutex
		got []observed
	)
	o := options(nil)
	o.Observe = func(name string, d time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, observed{name, d, err})
	}
	caller := rcall.New(newClient(t, s), o)
	ctx := context.Background()
	take := func() []observed {
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		return out
	}

	require.NoError(t, caller.Do(ctx, caller.B().Set().Key("k").Value("v").Build()).Error())
	_ = get(caller, "missing") // a nil reply
	b := caller.B()
	caller.DoMulti(ctx, b.Get().Key("k").Build(), b.Get().Key("k").Build())
	caller.DoMulti(ctx, b.Get().Key("k").Build(), b.Pttl().Key("k").Build())
	require.Error(t, caller.Do(ctx, b.Lpush().Key("k").Element("x").Build()).Error()) // WRONGTYPE
	caller.Exec(ctx, rcall.NewScript(`return 1`), nil, nil)
	caller.With(rcall.Options{Timeout: time.Second}).Do(ctx, b.Get().Key("k").Build())
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	caller.Do(cancelled, b.Get().Key("k").Build()) // refused: not observed

	calls := take()
	var names []string
	for _, c := range calls {
		names = append(names, c.name)
		require.Positive(t, c.d, c.name)
	}
	require.Equal(t, []string{"SET", "GET", "BATCH GET", "BATCH", "LPUSH", "EVALSHA", "GET"}, names)
	for i, c := range calls {
		if c.name == "LPUSH" {
			requireReply(t, c.err, "WRONGTYPE")
			continue
		}
		require.NoError(t, c.err, "call %d (%s)", i, c.name)
	}

	s.Stop()
	requireUnavailable(t, get(caller, "k"))
	calls = take()
	require.Len(t, calls, 1)
	requireUnavailable(t, calls[0].err)
}
