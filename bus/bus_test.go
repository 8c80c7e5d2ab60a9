package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/synspirit/tiercache/bus"
	"github.com/synspirit/tiercache/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	waitFor = 10 * time.Second
	tick    = 5 * time.Millisecond
)

// newClient returns a client of s of the kind an instance of the service would use; resp2
// forces the RESP2 protocol, where rueidis keeps pub/sub on its own connection.
func newClient(t testing.TB, s *redistest.Server, resp2 bool) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:  []string{s.Addr()},
		DisableCache: resp2,
		AlwaysRESP2:  resp2,
	})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// recorder collects what a bus hands to its callbacks.
type recorder struct {
	mu     sync.Mutex // protects msgs and keys
	msgs   []bus.Message
	keys   map[string]int
	resets atomic.Int64
}

func (r *recorder) onMessage(m bus.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
	if r.keys == nil {
		r.keys = make(map[string]int)
	}
	for _, k := range m.Keys {
		r.keys[k]++
	}
}

func (r *recorder) messages() []bus.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

func (r *recorder) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys[key] > 0
}

func (r *recorder) distinctKeys() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.keys)
}

func newBus(t testing.TB, c rueidis.Client, channel string, r *recorder) *bus.Bus {
	t.Helper()
	opts := bus.Options{Channel: channel}
	if r != nil {
		opts.OnMessage, opts.OnReset = r.onMessage, func() { r.resets.Add(1) }
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	b, err := bus.New(ctx, c, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func publish(t testing.TB, b *bus.Bus, m bus.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.NoError(t, b.Publish(ctx, m))
}

// requireFlows publishes from a until b's recorder has seen the key: after a reconnect the
// first messages may race the resubscription, which is exactly what OnReset covers.
func requireFlows(t *testing.T, a *bus.Bus, rb *recorder, key string) {
	t.Helper()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = a.Publish(ctx, bus.Message{Keys: []string{key}})
		return rb.has(key)
	}, waitFor, 20*time.Millisecond)
}

func TestTwoBusesExchangeMessagesAndIgnoreTheirOwn(t *testing.T) {
	for _, resp2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("resp2=%v", resp2), func(t *testing.T) {
			s := redistest.Start(t)
			var ra, rb recorder
			a := newBus(t, newClient(t, s, resp2), "inv", &ra)
			b := newBus(t, newClient(t, s, resp2), "inv", &rb)
			require.NotEqual(t, a.InstanceID(), b.InstanceID())
			require.Len(t, a.InstanceID(), 16)

			publish(t, a, bus.Message{Keys: []string{"synspirit:data:a"}, Groups: []string{"data:articles"}})
			publish(t, b, bus.Message{FlushAll: true})

			require.Eventually(t, func() bool { return len(rb.messages()) == 1 && len(ra.messages()) == 1 }, waitFor, tick)
			require.Eventually(t, func() bool { return a.Stats().Ignored == 1 && b.Stats().Ignored == 1 }, waitFor, tick)
			got := rb.messages()[0]
			require.Equal(t, bus.Message{Origin: a.InstanceID(), Seq: 1, Keys: []string{"synspirit:data:a"}, Groups: []string{"data:articles"}}, got)
			require.Equal(t, bus.Message{Origin: b.InstanceID(), Seq: 1, FlushAll: true}, ra.messages()[0])

			st := a.Stats()
			require.Equal(t, uint64(1), st.Published)
			require.Equal(t, uint64(1), st.Batches)
			require.Equal(t, uint64(1), st.Received)
			require.Equal(t, uint64(1), st.Subscriptions)
			require.Zero(t, st.Resets+st.Malformed+st.PublishErrors+st.BatchErrors)
			require.Zero(t, ra.resets.Load()+rb.resets.Load(), "the first subscription is not a reset")

			require.NoError(t, a.Publish(context.Background(), bus.Message{}), "an empty message is a no-op")
			require.Equal(t, uint64(1), a.Stats().Batches)
		})
	}
}

func TestBusesOnOtherChannelsAreNotHeard(t *testing.T) {
	s := redistest.Start(t)
	var rb recorder
	a := newBus(t, newClient(t, s, false), "one", nil)
	newBus(t, newClient(t, s, false), "two", &rb)
	c := newBus(t, newClient(t, s, false), "two", nil)
	publish(t, a, bus.Message{Keys: []string{"from-one"}})
	publish(t, c, bus.Message{Keys: []string{"from-two"}})
	require.Eventually(t, func() bool { return rb.has("from-two") }, waitFor, tick)
	require.False(t, rb.has("from-one"))
}

func TestConcurrentPublishesAreCoalesced(t *testing.T) {
	s := redistest.Start(t)
	var rb recorder
	a := newBus(t, newClient(t, s, false), "inv", nil)
	b := newBus(t, newClient(t, s, false), "inv", &rb)

	const n = 200
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			m := bus.Message{Keys: []string{fmt.Sprintf("k%d", i), "shared"}, Groups: []string{"g"}}
			assert.NoError(t, a.Publish(context.Background(), m))
		})
	}
	close(start)
	wg.Wait()

	st := a.Stats()
	require.Equal(t, uint64(n), st.Published)
	require.Less(t, st.Batches, uint64(n/4), "200 concurrent publishes should share a few PUBLISH commands")
	t.Logf("%d publishes in %d batches", n, st.Batches)
	require.Eventually(t, func() bool { return b.Stats().Received == st.Batches }, waitFor, tick)
	require.Equal(t, n+1, rb.distinctKeys())
	for _, m := range rb.messages() {
		require.Equal(t, []string{"g"}, m.Groups, "groups merged, not repeated")
		require.Equal(t, len(m.Keys), len(slices.Compact(slices.Sorted(slices.Values(m.Keys)))), "keys de-duplicated")
	}
	seqs := make([]uint64, 0, st.Batches)
	for _, m := range rb.messages() {
		seqs = append(seqs, m.Seq)
	}
	require.True(t, slices.IsSorted(seqs), "one sender: batches arrive in order")
}

func TestLargeMessageIsSplit(t *testing.T) {
	s := redistest.Start(t)
	var rb recorder
	a := newBus(t, newClient(t, s, false), "inv", nil)
	newBus(t, newClient(t, s, false), "inv", &rb)

	keys := make([]string, 3*bus.MaxBatchKeys+1)
	for i := range keys {
		keys[i] = fmt.Sprintf("synspirit:data:articles:list:%d", i)
	}
	publish(t, a, bus.Message{Keys: keys, FlushAll: true})
	require.Equal(t, uint64(4), a.Stats().Batches)
	require.Eventually(t, func() bool { return rb.distinctKeys() == len(keys) }, waitFor, tick)
	for _, m := range rb.messages() {
		require.LessOrEqual(t, len(m.Keys), bus.MaxBatchKeys)
	}
	require.True(t, rb.messages()[0].FlushAll)

	// Byte limit: 40 keys of 2 KiB cannot share one 64 KiB message.
	big := make([]string, 40)
	for i := range big {
		big[i] = fmt.Sprintf("%02d%s", i, make([]byte, 2048))
	}
	publish(t, a, bus.Message{Keys: big})
	require.Equal(t, uint64(6), a.Stats().Batches)

	err := a.Publish(context.Background(), bus.Message{Keys: []string{string(make([]byte, bus.MaxBatchBytes))}})
	require.ErrorIs(t, err, bus.ErrTooLarge)
}

func TestMalformedPayloadsAreCountedAndDropped(t *testing.T) {
	s := redistest.Start(t)
	var rb recorder
	b := newBus(t, newClient(t, s, false), "inv", &rb)
	a := newBus(t, newClient(t, s, false), "inv", nil)

	for _, p := range []string{"hello", "", "tcb\x01\x01a\x03\x00\xff\xff\xff\xff\x0f\x00", "tcb\x09", string(bus.Encode(bus.Message{}))} {
		s.Do("PUBLISH", "inv", p)
	}
	publish(t, a, bus.Message{Keys: []string{"valid"}})
	require.Eventually(t, func() bool { return rb.has("valid") }, waitFor, tick)
	require.Equal(t, uint64(5), b.Stats().Malformed)
	require.Len(t, rb.messages(), 1)
	require.Equal(t, uint64(1), b.Stats().Received)
}

func TestResetAfterClientKill(t *testing.T) {
	for _, resp2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("resp2=%v", resp2), func(t *testing.T) {
			s := redistest.Start(t)
			var ra, rb recorder
			a := newBus(t, newClient(t, s, resp2), "inv", &ra)
			b := newBus(t, newClient(t, s, resp2), "inv", &rb)
			requireFlows(t, a, &rb, "before")

			require.GreaterOrEqual(t, s.KillClients("TYPE", "pubsub"), int64(2))
			require.Eventually(t, func() bool { return ra.resets.Load() >= 1 && rb.resets.Load() >= 1 }, waitFor, tick)
			require.Equal(t, uint64(rb.resets.Load()), b.Stats().Resets)
			requireFlows(t, a, &rb, "after")
			requireFlows(t, b, &ra, "back")
		})
	}
}

func TestResetAfterRedisRestart(t *testing.T) {
	for _, resp2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("resp2=%v", resp2), func(t *testing.T) {
			s := redistest.Start(t)
			var ra, rb recorder
			a := newBus(t, newClient(t, s, resp2), "inv", &ra)
			newBus(t, newClient(t, s, resp2), "inv", &rb)
			requireFlows(t, a, &rb, "before")

			s.Stop()
			s.Restart()
			require.Eventually(t, func() bool { return ra.resets.Load() >= 1 && rb.resets.Load() >= 1 }, waitFor, tick)
			requireFlows(t, a, &rb, "after")
		})
	}
}

func TestPublishWithRedisDownFailsWithinDeadline(t *testing.T) {
	s := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	a, err := bus.New(ctx, newClient(t, s, false), bus.Options{Channel: "inv", PublishTimeout: 50 * time.Millisecond})
	require.NoError(t, err)
	defer a.Close()

	s.Stop()
	for range 3 {
		start := time.Now()
		err := a.Publish(context.Background(), bus.Message{Keys: []string{"k"}})
		require.Error(t, err)
		require.NotErrorIs(t, err, bus.ErrClosed)
		// Generous bound: the point is that it does not hang on a dead server.
		require.Less(t, time.Since(start), 2*time.Second, err.Error())
	}
	st := a.Stats()
	require.Equal(t, uint64(3), st.PublishErrors)
	require.Equal(t, uint64(3), st.BatchErrors)
}

func TestPublishToAHungRedisTimesOut(t *testing.T) {
	s := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	a, err := bus.New(ctx, newClient(t, s, false), bus.Options{Channel: "inv", PublishTimeout: 50 * time.Millisecond})
	require.NoError(t, err)
	defer a.Close()

	s.Do("CLIENT", "PAUSE", "20000", "WRITE")
	defer s.Do("CLIENT", "UNPAUSE")
	start := time.Now()
	err = a.Publish(context.Background(), bus.Message{Keys: []string{"k"}})
	require.ErrorIs(t, err, bus.ErrUnavailable, "a publish timeout is Redis failing to answer")
	require.NotErrorIs(t, err, context.DeadlineExceeded, "that match is kept for the caller's own deadline")
	var timeout interface{ Timeout() bool }
	require.True(t, errors.As(err, &timeout) && timeout.Timeout(), err.Error())
	require.Less(t, time.Since(start), 2*time.Second, err.Error())
}

func TestPublishGivesUpWithItsContext(t *testing.T) {
	s := redistest.Start(t)
	a := newBus(t, newClient(t, s, false), "inv", nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, a.Publish(ctx, bus.Message{Keys: []string{"k"}}), context.Canceled)
}

func TestCloseFailsPendingPublishes(t *testing.T) {
	s := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	a, err := bus.New(ctx, newClient(t, s, false), bus.Options{Channel: "inv", PublishTimeout: time.Minute})
	start := time.Now()
	require.NoError(t, err)

	// Hold PUBLISH on the server so that one batch is in flight and the rest queue behind it.
	s.Do("CLIENT", "PAUSE", "20000", "WRITE")
	defer s.Do("CLIENT", "UNPAUSE")
	errs := make(chan error, 10)
	publishAsync := func(key string) {
		go func() { errs <- a.Publish(context.Background(), bus.Message{Keys: []string{key}}) }()
	}
	// The first publish gives up waiting; its batch stays in flight, held by the pause.
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	require.ErrorIs(t, a.Publish(short, bus.Message{Keys: []string{"first"}}), context.DeadlineExceeded)
	require.Eventually(t, func() bool { return bus.QueuedKeys(a) == 0 }, waitFor, tick, "the sender has taken the batch")
	for i := range cap(errs) {
		publishAsync(fmt.Sprint(i))
	}
	// Ten publishes wait behind the one in flight, merged in one batch.
	require.Eventually(t, func() bool { return bus.QueuedKeys(a) == cap(errs) }, waitFor, tick)
	require.Equal(t, 1, bus.QueuedBatches(a))
	require.Zero(t, a.Stats().Batches+a.Stats().BatchErrors)
	require.Empty(t, errs)

	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { assert.NoError(t, a.Close()) })
	}
	wg.Wait()
	for range cap(errs) {
		require.ErrorIs(t, <-errs, bus.ErrClosed)
	}
	require.ErrorIs(t, a.Publish(context.Background(), bus.Message{Keys: []string{"late"}}), bus.ErrClosed)
	require.NoError(t, a.Close())
	require.Equal(t, uint64(cap(errs)+2), a.Stats().PublishErrors)
	require.Equal(t, uint64(1), a.Stats().BatchErrors, "the batch in flight is abandoned, the queued one never sent")
	require.Less(t, time.Since(start), 5*time.Second, "Close does not wait for the publish timeout")
}

func TestCloseReleasesTheSubscriptionAndLeavesTheClientOpen(t *testing.T) {
	for _, resp2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("resp2=%v", resp2), func(t *testing.T) {
			s := redistest.Start(t)
			c := newClient(t, s, resp2)
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			a, err := bus.New(ctx, c, bus.Options{Channel: "inv"})
			require.NoError(t, err)
			numsub := func() int64 {
				v, err := s.Do("PUBSUB", "NUMSUB", "inv").ToArray()
				require.NoError(t, err)
				n, err := v[1].AsInt64()
				require.NoError(t, err)
				return n
			}
			require.Equal(t, int64(1), numsub())
			require.NoError(t, a.Close())
			require.Eventually(t, func() bool { return numsub() == 0 }, waitFor, tick)
			require.NoError(t, c.Do(ctx, c.B().Ping().Build()).Error(), "the client stays usable")
		})
	}
}

func TestNewValidatesOptions(t *testing.T) {
	s := redistest.Start(t)
	c := newClient(t, s, false)
	ctx := context.Background()
	_, err := bus.New(ctx, c, bus.Options{})
	require.ErrorContains(t, err, "bus: Options.Channel is required")
	_, err = bus.New(ctx, c, bus.Options{Channel: "inv", InstanceID: string(make([]byte, bus.MaxOriginLen+1))})
	require.Error(t, err)
	_, err = bus.New(ctx, nil, bus.Options{Channel: "inv"})
	require.Error(t, err)

	b, err := bus.New(ctx, c, bus.Options{Channel: "inv", InstanceID: "me"})
	require.NoError(t, err)
	require.Equal(t, "me", b.InstanceID())
	require.NoError(t, b.Close())
}

func TestNewFailsWhenRedisIsDown(t *testing.T) {
	s := redistest.Start(t)
	c := newClient(t, s, false)
	s.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	b, err := bus.New(ctx, c, bus.Options{Channel: "inv"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Nil(t, b)

	_, err = bus.New(context.Background(), c, bus.Options{Channel: "inv", SubscribeTimeout: 200 * time.Millisecond})
	require.ErrorIs(t, err, context.DeadlineExceeded)
}
