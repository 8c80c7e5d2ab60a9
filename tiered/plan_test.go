package tiered

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// makePlan decides everything New can decide from Options alone, without Redis.
func TestMakePlan(t *testing.T) {
	for name, tc := range map[string]struct {
		opts      Options
		listen    bool
		mode      InvalidationMode
		offlineOK bool
		err       string // substring of the ErrInvalidOptions error; "" for none
	}{
		"zero value":                {opts: Options{}, listen: true, mode: Auto},
		"tracking":                  {opts: Options{Invalidation: Tracking}, listen: true, mode: Tracking},
		"bus-only":                  {opts: Options{Invalidation: BusOnly}, mode: BusOnly},
		"RESP2 falls back":          {opts: Options{RedisURL: "redis://h:1/0?protocol=2"}, mode: BusOnly},
		"RESP2 refuses Tracking":    {opts: Options{RedisURL: "redis://h:1/0?protocol=2", Invalidation: Tracking}, err: "asks for RESP2"},
		"own client":                {opts: Options{Redis: fakeClient{}}, mode: BusOnly},
		"own client, Tracking":      {opts: Options{Redis: fakeClient{}, Invalidation: Tracking}, err: "cannot hear tracking invalidations"},
		"start offline":             {opts: Options{StartWithoutRedis: true}, listen: true, mode: Auto, offlineOK: true},
		"start offline, cluster":    {opts: Options{RedisURL: "redis://a:1,b:2/0", StartWithoutRedis: true}, err: "one standalone server"},
		"start offline, sentinel":   {opts: Options{RedisURL: "redis://a:1/0?master_set=m", StartWithoutRedis: true}, err: "one standalone server"},
		"start offline, RESP2":      {opts: Options{RedisURL: "redis://a:1/0?protocol=2", StartWithoutRedis: true}, err: "RESP3"},
		"start offline, bus-only":   {opts: Options{Invalidation: BusOnly, StartWithoutRedis: true}, err: "needs Tracking"},
		"start offline, own client": {opts: Options{Redis: fakeClient{}, StartWithoutRedis: true}, err: "client of your own"},
		"bad scheme":                {opts: Options{RedisURL: "http://h/"}, err: "scheme"},
		"negative timeout":          {opts: Options{Timeout: -1}, err: "Timeout"},
		"TTL over MaxTTL":           {opts: Options{DefaultTTL: MaxTTL + 1}, err: "MaxTTL"},
		"fail-safe over MaxTTL":     {opts: Options{FailSafeMaxStale: MaxTTL + 1}, err: "MaxTTL"},
		"negative MaxValueBytes":    {opts: Options{MaxValueBytes: -1}, err: "MaxValueBytes"},
		"bad EagerRefresh":          {opts: Options{EagerRefresh: 1}, err: "EagerRefresh"},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := makePlan(tc.opts)
			if tc.err != "" {
				require.ErrorIs(t, err, ErrInvalidOptions)
				require.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.listen, p.listen, "listen")
			assert.Equal(t, tc.mode, p.mode, "mode")
			assert.Equal(t, tc.offlineOK, p.offlineOK, "offlineOK")
			if tc.opts.Redis == nil {
				assert.True(t, p.client.DisableCache, "the data client never caches: the listener tracks")
				assert.Equal(t, "tiercache", p.client.ClientName)
			}
		})
	}
}

func TestMakePlanDefaults(t *testing.T) {
	p, err := makePlan(Options{RedisURL: "rediss://h:6380/3"})
	require.NoError(t, err)
	assert.Equal(t, DefaultTTL, p.opts.DefaultTTL)
	assert.Equal(t, DefaultTimeout, p.opts.Timeout)
	assert.EqualValues(t, DefaultMaxValueBytes, p.opts.MaxValueBytes)
	assert.Equal(t, 3, p.client.SelectDB)
	assert.True(t, p.tlsOn)
	assert.Equal(t, time.Second, p.client.Dialer.Timeout, "a cache notices a dead server sooner than rueidis's 5 s")
	assert.Equal(t, DefaultBusOnlyL1TTL, p.l1TTLCap(BusOnly))
	assert.Zero(t, p.l1TTLCap(Tracking))

	p, err = makePlan(Options{L1TTL: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, time.Minute, p.l1TTLCap(BusOnly), "L1TTL replaces the bus-only default")
}

// The plan never leaks the password, even in a URL error.
func TestMakePlanRedactsPassword(t *testing.T) {
	_, err := makePlan(Options{RedisURL: "redis://u:s3cret@h:1/notadb"})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
}

// fakeClient stands for a caller's client in plans, which never call it.
type fakeClient struct{ rueidis.Client }

// The keeper's decisions, one check at a time.
func TestKeeperStep(t *testing.T) {
	const ping = 500 * time.Millisecond
	timeout := errors.Join(context.DeadlineExceeded)
	refused := &rueidis.RedisError{} // an answer: Redis refuses the listener
	down := errors.New("dial tcp 127.0.0.1:1: connect: connection refused")

	assert.Equal(t, 2, keeperSlowMax(5*time.Second), "a long timeout keeps the rule every process gets")
	assert.Equal(t, 3, keeperSlowMax(1500*time.Millisecond))

	var s keeperState
	act, next := s.step(keeperCheck{live: true}, ping)
	assert.Equal(t, keepNothing, act)
	assert.Equal(t, trackingCheckInterval, next, "healthy: check again in a while")

	act, next = s.step(keeperCheck{err: timeout, live: true}, ping)
	assert.Equal(t, keepSlow, act, "a first timeout without an error is not a drop")
	assert.Equal(t, ping, next)
	act, _ = s.step(keeperCheck{err: timeout, live: true}, ping)
	assert.Equal(t, keepLost, act, "a second one is")

	s = keeperState{}
	act, next = s.step(keeperCheck{err: down, live: true}, ping)
	assert.Equal(t, keepLost, act, "an error is a drop at once")
	assert.Equal(t, trackingRetryMin, next)
	var backoff []time.Duration
	for range 10 {
		act, next = s.step(keeperCheck{err: down}, ping)
		assert.Equal(t, keepNothing, act, "already off: nothing more to do")
		backoff = append(backoff, next)
	}
	assert.Equal(t, 2*trackingRetryMin, backoff[0])
	assert.Equal(t, trackingRetryMax, backoff[len(backoff)-1], "the back-off is capped")

	act, next = s.step(keeperCheck{droppedDuring: true}, ping)
	assert.Equal(t, keepNothing, act, "it dropped again while the check was in flight")
	assert.Zero(t, next, "check again at once")
	act, next = s.step(keeperCheck{}, ping)
	assert.Equal(t, keepResume, act, "back: flush and turn L1 on")
	assert.Equal(t, trackingCheckInterval, next)
	assert.Equal(t, trackingRetryMin, s.retry, "the back-off starts over")

	// A saturated process (goroutines waited for a P during the check): slow checks in a
	// row keep L1 up to keeperSlowMax (10 at a 500 ms PING), then the listener is lost all
	// the same.
	require.Equal(t, 10, keeperSlowMax(ping))
	s = keeperState{}
	for i := range keeperSlowMax(ping) {
		act, next = s.step(keeperCheck{err: timeout, live: true, starved: true}, ping)
		require.Equal(t, keepSlow, act, "slow check %d of a saturated process", i+1)
		assert.Equal(t, ping, next)
	}
	act, _ = s.step(keeperCheck{err: timeout, live: true, starved: true}, ping)
	assert.Equal(t, keepLost, act, "past keeperSlowMax, saturated or not")
	s = keeperState{}
	s.step(keeperCheck{err: timeout, live: true, starved: true}, ping)
	s.step(keeperCheck{err: timeout, live: true, starved: true}, ping)
	act, _ = s.step(keeperCheck{err: timeout, live: true}, ping)
	assert.Equal(t, keepLost, act, "slow again once the process is not saturated: lost")
	s = keeperState{}
	s.step(keeperCheck{err: timeout, live: true, starved: true}, ping)
	s.step(keeperCheck{live: true}, ping)
	act, _ = s.step(keeperCheck{err: timeout, live: true}, ping)
	assert.Equal(t, keepSlow, act, "an answer starts the count over")
	act, _ = s.step(keeperCheck{err: down, live: true, starved: true}, ping)
	assert.Equal(t, keepLost, act, "an error is a drop, saturated or not")

	s = keeperState{}
	act, _ = s.step(keeperCheck{err: refused}, ping)
	assert.Equal(t, keepRefused, act, "Redis answers but refuses the listener: said once")
	act, _ = s.step(keeperCheck{err: refused}, ping)
	assert.Equal(t, keepNothing, act, "and not again")
}

// The listener's rueidis keepalive outlasts the keeper's patience with a saturated process:
// rueidis closes a connection whose PING goes unanswered for ConnWriteTimeout, and in a
// process whose every P is busy the answer waits in the run queue (a saturated test process saw
// the listener dropped at the data client's 1 s). The data client keeps its own.
func TestListenerKeepaliveOutlastsTheKeeper(t *testing.T) {
	for _, timeout := range []time.Duration{0, 50 * time.Millisecond, 2 * time.Second, 7 * time.Second} {
		p, err := makePlan(Options{Timeout: timeout})
		require.NoError(t, err)
		opt := (&tracker{}).options(p)
		assert.GreaterOrEqual(t, opt.ConnWriteTimeout, keeperPatience(p.opts.Timeout), "timeout %v", timeout)
		assert.GreaterOrEqual(t, keeperPatience(p.opts.Timeout), trackingStarvedMax-2*keeperPingTimeout(p.opts.Timeout))
		assert.LessOrEqual(t, keeperPatience(p.opts.Timeout), max(trackingStarvedMax, 4*keeperPingTimeout(p.opts.Timeout)),
			"bounded in time, not in checks: a long Timeout does not make the keeper patient for minutes")
		assert.Equal(t, max(10*p.opts.Timeout, time.Second), p.client.ConnWriteTimeout, "the data client's")
	}
	p, err := makePlan(Options{RedisURL: "redis://h:1/0?write_timeout=1m"})
	require.NoError(t, err)
	assert.Equal(t, time.Minute, (&tracker{}).options(p).ConnWriteTimeout, "a longer one asked for in the URL stays")
}
