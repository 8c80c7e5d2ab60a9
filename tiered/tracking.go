package tiered

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/synspirit/tiercache/internal/rcall"
)

// Server-assisted tracking, on a connection of its own.
//
// The cache listens for invalidations on a separate rueidis client with CLIENT TRACKING ON
// BCAST NOLOOP and one PREFIX per L1 group, and reads and writes through a plain client, but
// for the writes whose values it keeps in L1 (Set, and what a load stores): those go through
// the listener, whose own writes Redis does not report back to it (NOLOOP; see ownWriter).
// Why BCAST on a listener rather than OPTIN with DoCache on the data connections (rueidis's
// default), measured on loopback with a 300-byte value:
//
//   - rueidis runs any connection that receives pushes in its background pipelining mode,
//     which costs a serial caller ~40 µs per GET instead of ~30 µs in its direct mode; the
//     plain data client keeps the direct mode.
//   - OPTIN tracks per connection only the keys read through DoCache, and rueidis then keeps
//     its own copy of every such value beside ours: twice the memory, and a
//     CLIENT CACHING YES round trip added to every miss. BCAST tracks by prefix, whoever
//     read what, so one listener sees every change to the cache's keys.
//   - BCAST tracks prefixes, not keys: the listener asks for the prefix of every group that
//     keeps values in L1 (<KeyPrefix><name>@), added when the group is first made and re-sent
//     after every reconnection, and for the group generation keys. Writes to counters, to
//     groups without L1, to locks and to anything else under KeyPrefix reach no instance.
//     Until its prefix is tracked on every node, a group's values are not kept in L1.
//
// The listener is sound only while it is connected: a dropped connection loses
// invalidations. rueidis reports a drop as OnInvalidations(nil); the cache then flushes L1
// and stops filling it until a PING through the listener succeeds again (which proves that
// a new connection is up and has re-sent CLIENT TRACKING), and flushes once more at that
// point, since writes between the drop and the reconnection were not heard. A keeper PING
// that gets no answer in time, without an error, counts as a drop only the second time in a
// row: in a process whose every P is busy the reply can wait in the run queue past the
// timeout, and flushing L1 then would turn an overload into Redis load, and every read into
// a round trip that times out in the same run queue. While the runtime says that goroutines
// of this process waited a quarter of the PING's timeout or more for a P during the check (a
// wait that explains a late answer: see keep), the process is the slow one, and the keeper keeps asking,
// for up to trackingStarvedMax in all. The invalidations that come meanwhile are heard late
// as the PING's answer is, not lost. A silent listener in a process that is not saturated is
// lost at its second slow check. A listener that is
// really stuck is closed by rueidis itself (no reply to its keepalive PING within
// ConnWriteTimeout), which reports it as a drop.

const (
	trackingCheckInterval = time.Second
	trackingRetryMin      = 10 * time.Millisecond
	trackingRetryMax      = time.Second
	trackingPingMin       = 500 * time.Millisecond

	// trackingStarvedMax bounds how long slow checks in a row keep L1 on while the process
	// is saturated (see keeperSlowMax). Past it the listener is taken for lost, saturated or
	// not.
	trackingStarvedMax = 10 * time.Second
)

type tracker struct {
	client rueidis.Client
	caller *rcall.Caller // over client: pinned, classified PINGs
	kick   chan struct{} // size 1: wake the keeper after a drop

	// cache is set once by attach; invalidations before it concern an L1 that does not
	// exist yet, or is not live.
	cache atomic.Pointer[Cache]

	// liveMu orders drops against the keeper turning L1 on: a drop reported while a check
	// was in flight must not be overwritten by that check's success.
	liveMu sync.Mutex
	drops  uint64 // drops reported by rueidis; guarded by liveMu
	upAt   uint64 // drops when the first PING succeeded; guarded by liveMu
	up     bool   // the first PING succeeded; guarded by liveMu

	// held are the L1 hashes of the keys of writes through the listener that failed without
	// Redis's answer, waiting for the keeper's next successful check (see unsettledWrite).
	heldMu sync.Mutex
	held   []uint64

	pingHook atomic.Pointer[func(context.Context, time.Duration) error] // tests: replaces ping
	starved  atomic.Uint64                                              // slow checks forgiven as the process's lateness (for tests)

	// prefixMu guards the prefixes the listener must track and where they are tracked.
	prefixMu  sync.Mutex
	wanted    []*namespace               // groups with L1, in the order they were made
	armed     map[string]map[string]bool // node address → prefixes tracked on its current connection
	broad     bool                       // more than maxTrackedPrefixes groups: track the whole KeyPrefix
	keyPrefix string
}

// maxTrackedPrefixes is how many group prefixes the listener tracks one by one. Redis checks
// every new prefix against every prefix of the connection (O(n²) in all), so past this many
// L1 groups the listener tracks the whole KeyPrefix instead, and hears of every write under it.
const maxTrackedPrefixes = 1024

// static is the one prefix every listener connection gets from rueidis when it connects:
// the group generation keys. Group prefixes are added by the keeper.
func trackingStatic(keyPrefix string) []string {
	return []string{"BCAST", "NOLOOP", "PREFIX", genKeyPrefix(keyPrefix)}
}

// options are the listener client's: p's, tracking every connection it opens.
func (t *tracker) options(p plan) rueidis.ClientOption {
	opt := p.client
	opt.DisableCache = false
	opt.ClientTrackingOptions = trackingStatic(p.opts.KeyPrefix)
	opt.OnInvalidations = t.onInvalidations
	opt.PipelineMultiplex = -1 // one connection per node is enough to listen
	// Every write through the listener must go on that connection, which tracks with NOLOOP
	// and which the keeper's PING follows (see unsettledWrite): rueidis sends a pipeline of
	// BlockingPipeline commands or more on a pooled connection of its own.
	opt.BlockingPipeline = math.MaxInt32
	opt.BlockingPoolSize = 1
	opt.CacheSizeEachConn = 1 << 16 // rueidis's own client-side cache stays unused
	opt.ClientName += "-tracking"
	// The keeper judges whether the listener is alive, knowing when this process is too
	// saturated to read an answer in time (see keep). rueidis's keepalive, which closes a
	// connection whose PING goes unanswered for ConnWriteTimeout (1 s by default here), is
	// only its backstop: it would take the run queue of a busy process for a dead
	// connection, drop the listener and flush L1.
	opt.ConnWriteTimeout = max(opt.ConnWriteTimeout, keeperPatience(p.opts.Timeout))
	// The listener only PINGs, so it would not notice a cluster's topology change by
	// itself: refresh it as often as it is checked.
	opt.ClusterOption.ShardsRefreshInterval = trackingCheckInterval
	return opt
}

// dialTracker connects the listener. With offlineOK, a Redis that does not answer is not
// an error: the listener is returned unconnected, and the keeper connects it later.
func dialTracker(ctx context.Context, p plan, log *zap.Logger) (*tracker, error) {
	t := &tracker{kick: make(chan struct{}, 1), armed: map[string]map[string]bool{}, keyPrefix: p.opts.KeyPrefix}
	opt := t.options(p)
	client, err := newClient(ctx, p, opt, log)
	if client == nil {
		return nil, err
	}
	t.client = client
	t.caller = rcall.New(client, rcall.Options{Unavailable: ErrUnavailable, Closed: ErrClosed, Observe: p.opts.redisObserve()})
	if err == nil {
		err = t.ping(ctx, opt.Dialer.Timeout) // at start-up, as patient as a dial
	}
	if err != nil && !mayStartWithout(ctx, p, err, log) {
		client.Close()
		return nil, err
	}
	t.liveMu.Lock()
	t.up = err == nil
	t.liveMu.Unlock()
	return t, nil
}

// attach makes c hear the listener's invalidations and starts the keeper. L1 turns on now
// if the listener is up and has not dropped since it came up; otherwise the keeper turns
// it on when it is back.
func (t *tracker) attach(c *Cache) {
	t.liveMu.Lock()
	t.cache.Store(c)
	if t.up && t.drops == t.upAt {
		c.l1.Resume()
	} else {
		t.wake()
	}
	t.liveMu.Unlock()
	c.life.Go(func() { t.keep(c) })
}

// unsettledWrite is told of a write through the listener that failed without Redis's
// answer, of the keys whose L1 hashes are hs: it may still be applied, and Redis will not
// report it here (NOLOOP). Those keys are held in L1 (invalidated, and not filled: a read
// made meanwhile would fill the value the write replaces) until the keeper's next check
// succeeds: its PING, sent after the write on the same connection, is answered after it.
// (If that connection drops instead, rueidis reports a drop, and L1 is flushed.) Only those
// keys' stripes wait: an overloaded process whose writes time out keeps its L1.
func (t *tracker) unsettledWrite(c *Cache, hs []uint64) {
	for _, h := range hs {
		c.l1.Hold(h)
	}
	t.heldMu.Lock()
	t.held = append(t.held, hs...)
	t.heldMu.Unlock()
	t.wake()
}

// takeHeld returns the keys held so far, for the check about to start.
func (t *tracker) takeHeld() []uint64 {
	t.heldMu.Lock()
	defer t.heldMu.Unlock()
	hs := t.held
	t.held = nil
	return hs
}

// endHeld ends the holds of hs once a check that began after their writes has succeeded;
// after a failed check they wait for the next.
func (t *tracker) endHeld(c *Cache, hs []uint64, checked bool) {
	if !checked {
		t.heldMu.Lock()
		t.held = append(t.held, hs...)
		t.heldMu.Unlock()
		return
	}
	for _, h := range hs {
		c.l1.Release(h)
	}
}

func (t *tracker) wake() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// onInvalidations runs on rueidis's reader goroutine: counters only, and a non-blocking
// wake-up of the keeper.
func (t *tracker) onInvalidations(keys []rueidis.RedisMessage) {
	c := t.cache.Load()
	if keys == nil {
		t.liveMu.Lock()
		t.drops++
		if c != nil {
			c.l1.Pause()
		}
		t.liveMu.Unlock()
		t.forgetArmed()
		t.wake()
	}
	if c != nil {
		c.handleInvalidations(keys)
	}
}

// keep checks the listener every trackingCheckInterval, and at once after a drop, and
// turns L1 on again when it answers. Its decisions are keeperState.step's.
func (t *tracker) keep(c *Cache) {
	var st keeperState
	timer := time.NewTimer(trackingCheckInterval)
	defer timer.Stop()
	ctx := c.life.Context()
	pingTimeout := keeperPingTimeout(c.opts.Timeout)
	var logged uint64 // drops logged so far
	var sched schedWatch
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.kick:
		case <-timer.C:
		}
		t.liveMu.Lock()
		drops := t.drops
		t.liveMu.Unlock()
		held := t.takeHeld()
		if drops > logged {
			// rueidis reports a drop without its cause: the connection closed (killed, reset,
			// or no reply to its keepalive). Once per drop, from here rather than from its
			// reader goroutine.
			c.log.Warn("tracking connection dropped: L1 flushed and off until the listener is back",
				zap.Uint64("drops", drops-logged))
			logged = drops
		}
		sched.mark()
		err := t.check(ctx, pingTimeout)
		t.endHeld(c, held, err == nil && len(t.client.Nodes()) > 0) // a PING went to every node
		// The answer reaches the keeper through three goroutines that each wait in the run
		// queue (rueidis's writer and reader, then the keeper): a goroutine that waited a
		// quarter of the timeout for a P explains a late answer.
		starved := err != nil && onlySlow(err) && sched.waitedSince(pingTimeout/4)
		if err == nil && !c.l1.Live() {
			// Back after a drop: every group prefix on every node before L1 turns on.
			err = t.arm(ctx, c, pingTimeout)
		}
		if ctx.Err() != nil {
			return
		}
		t.liveMu.Lock()
		act, next := st.step(keeperCheck{err: err, live: c.l1.Live(), droppedDuring: t.drops != drops, starved: starved}, pingTimeout)
		if act == keepResume {
			// Writes made while the listener was down were not heard.
			c.flushL1()
			c.l1.Resume()
		}
		t.liveMu.Unlock()
		switch act {
		case keepSlow:
			if starved {
				t.starved.Add(1)
			}
			c.log.Debug("tracking connection slow to answer; checking again", zap.Error(err), zap.Bool("process_saturated", starved))
		case keepLost:
			if c.l1.Pause() {
				c.flushL1()
				c.log.Warn("tracking connection lost: L1 flushed and off until it is back", zap.Error(err))
			}
		case keepRefused:
			c.log.Error("tracking listener refused by redis: L1 stays off", zap.Error(err))
		case keepResume:
			c.log.Info("tracking listener connected: L1 on")
		case keepNothing:
			if err == nil && c.l1.Live() {
				// Groups made since, or nodes that joined: arm them. A node whose writes were
				// not heard until now means a flush.
				if joined, aerr := t.armNew(ctx, c, pingTimeout); aerr != nil {
					c.log.Warn("tracking prefixes not armed yet: those groups stay out of L1", zap.Error(aerr))
					next = min(next, trackingRetryMax)
				} else if joined {
					c.flushL1()
					c.log.Info("tracking listener armed on a node that joined: L1 flushed")
				}
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// keeperPingTimeout is how long the keeper waits for the listener's answer to a PING, for a
// cache whose per-call timeout is timeout.
func keeperPingTimeout(timeout time.Duration) time.Duration { return max(timeout, trackingPingMin) }

// keeperSlowMax is how many slow checks in a row keep L1 on while the process is saturated:
// as many as fit in trackingStarvedMax, each check taking its timeout and waiting as long
// again before the next (10 at the default timeout), and never fewer than the 2 that any
// process gets.
func keeperSlowMax(pingTimeout time.Duration) int {
	return max(2, int(trackingStarvedMax/(2*pingTimeout)))
}

// keeperPatience is how long the keeper may go without an answer from the listener while
// the process is saturated: keeperSlowMax checks.
func keeperPatience(timeout time.Duration) time.Duration {
	pt := keeperPingTimeout(timeout)
	return time.Duration(keeperSlowMax(pt)) * 2 * pt
}

// keeperState is what the keeper remembers between two checks of the listener.
type keeperState struct {
	retry         time.Duration // back-off while the listener is down; 0 means trackingRetryMin
	slow          int           // the checks in a row that timed out without an error
	refusedLogged bool          // the listener's refusal by Redis has been logged
}

// keeperCheck is what one check found.
type keeperCheck struct {
	err           error // the PING's
	live          bool  // L1 was on when the check ended
	droppedDuring bool  // rueidis reported a drop while the check was in flight
	starved       bool  // the process was saturated during the check (see keep)
}

// keeperAction is what the keeper does after a check.
type keeperAction int

const (
	keepNothing keeperAction = iota
	keepSlow                 // no answer in time, no error: ask again soon before calling it lost
	keepLost                 // the listener is down: L1 off and flushed
	keepRefused              // Redis answers, but refuses the listener: say so once
	keepResume               // the listener is back: flush, then L1 on
)

// step decides what to do after a check, and when to check next.
func (s *keeperState) step(ch keeperCheck, pingTimeout time.Duration) (keeperAction, time.Duration) {
	if s.retry == 0 {
		s.retry = trackingRetryMin
	}
	switch {
	case ch.err != nil && onlySlow(ch.err) && ch.live && (s.slow == 0 || ch.starved && s.slow < keeperSlowMax(pingTimeout)):
		// In a process whose every P is busy, a reply can wait in the run queue longer
		// than the timeout; flushing L1 then would add Redis load to an overload. Once, or
		// for as long as the process is seen saturated (within trackingStarvedMax).
		s.slow++
		return keepSlow, pingTimeout
	case ch.err != nil:
		act := keepNothing
		switch {
		case ch.live:
			act = keepLost
		case !unreachable(ch.err) && !s.refusedLogged:
			s.refusedLogged = true
			act = keepRefused
		}
		next := s.retry
		s.retry = min(2*s.retry, trackingRetryMax)
		s.slow = 0
		return act, next
	case !ch.live:
		s.retry, s.slow, s.refusedLogged = trackingRetryMin, 0, false
		if ch.droppedDuring {
			return keepNothing, 0 // it dropped again while the check was in flight: check again
		}
		return keepResume, trackingCheckInterval
	}
	s.retry, s.slow = trackingRetryMin, 0
	return keepNothing, trackingCheckInterval
}

// schedWatch tells whether goroutines of this process waited long for a P over a span of
// time, from the runtime's histogram of scheduling latencies (sampled by the runtime, and
// cumulative: mark takes a reading, waitedSince compares the next one with it). The keeper's
// own, one goroutine.
type schedWatch struct {
	sample []metrics.Sample
	counts []uint64 // the histogram's counts at mark
}

// mark takes the reading the next waitedSince compares with.
func (w *schedWatch) mark() {
	if w.sample == nil {
		w.sample = []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	}
	metrics.Read(w.sample)
	if w.sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		w.counts = w.counts[:0]
		return
	}
	w.counts = append(w.counts[:0], w.sample[0].Value.Float64Histogram().Counts...)
}

// waitedSince reports whether some goroutine waited at least d for a P since mark (a
// runtime without the metric reports false).
func (w *schedWatch) waitedSince(d time.Duration) bool {
	if len(w.counts) == 0 {
		return false
	}
	metrics.Read(w.sample)
	if w.sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return false
	}
	h := w.sample[0].Value.Float64Histogram()
	for i, n := range h.Counts {
		// Bucket i holds latencies in [Buckets[i], Buckets[i+1]).
		if i < len(w.counts) && n > w.counts[i] && h.Buckets[i] >= d.Seconds() {
			return true
		}
	}
	return false
}

// check is the keeper's ping, unless a test has replaced it.
func (t *tracker) check(ctx context.Context, timeout time.Duration) error {
	if f := t.pingHook.Load(); f != nil {
		return (*f)(ctx, timeout)
	}
	return t.ping(ctx, timeout)
}

// ping checks every node the listener is connected to, each within timeout.
func (t *tracker) ping(ctx context.Context, timeout time.Duration) error {
	var errs []error
	for addr, node := range t.client.Nodes() {
		if err := t.caller.DoOn(ctx, node, node.B().Ping().Build(), timeout).Error(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

// onlySlow tells whether err (one error, or several joined) is made of timeouts only: no
// answer in time, rather than an answer that something is wrong.
func onlySlow(err error) bool {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var te interface{ Timeout() bool }
		if !(errors.As(e, &te) && te.Timeout()) && !errors.Is(e, context.DeadlineExceeded) && !errors.Is(e, os.ErrDeadlineExceeded) {
			return false
		}
	}
	return len(errs) > 0
}

func (t *tracker) close() { t.client.Close() }

// want adds ns's prefix to what the listener tracks; the keeper arms it and then marks ns
// armed, after which its values may go to L1.
func (t *tracker) want(ns *namespace) {
	t.prefixMu.Lock()
	t.wanted = append(t.wanted, ns)
	toBroad := !t.broad && len(t.wanted) > maxTrackedPrefixes
	if toBroad {
		// Tracking goes off and on again with the one broad prefix on every node: as after a
		// drop, L1 is off until every node tracks it, and then flushed.
		t.broad = true
		clear(t.armed)
	}
	t.prefixMu.Unlock()
	if c := t.cache.Load(); toBroad && c != nil {
		c.l1.Pause() // the keeper arms the broad prefix before it turns L1 on again
		c.log.Info("more groups with L1 than tracked prefixes: tracking the whole key prefix", zap.Int("groups", maxTrackedPrefixes+1))
	}
	t.wake()
}

// forgetArmed records that every node's listener connection may be new: its prefixes must be
// sent again.
func (t *tracker) forgetArmed() {
	t.prefixMu.Lock()
	clear(t.armed)
	t.prefixMu.Unlock()
}

// arm sends every wanted prefix to every node that lacks it, and marks the namespaces armed.
func (t *tracker) arm(ctx context.Context, c *Cache, timeout time.Duration) error {
	_, err := t.armNew(ctx, c, timeout)
	return err
}

// armNew arms what is missing: prefixes of groups made since the last call, and every prefix
// on nodes the listener had not armed. It reports whether a node was armed from scratch while
// others already were (a node that joined: its writes until now went unheard).
func (t *tracker) armNew(ctx context.Context, c *Cache, timeout time.Duration) (joined bool, err error) {
	t.prefixMu.Lock()
	wanted := append([]*namespace(nil), t.wanted...)
	hadArmed := len(t.armed) > 0
	broad := t.broad
	t.prefixMu.Unlock()
	var errs []error
	for addr, node := range t.client.Nodes() {
		t.prefixMu.Lock()
		have := t.armed[addr]
		t.prefixMu.Unlock()
		var missing []string
		if broad {
			if !have[t.keyPrefix] {
				missing = []string{t.keyPrefix}
			}
		} else {
			for _, ns := range wanted {
				if !have[ns.prefix] {
					missing = append(missing, ns.prefix)
				}
			}
		}
		if have != nil && len(missing) == 0 {
			continue
		}
		arm := t.armNode
		if broad {
			arm = t.armNodeBroad
		}
		if err := arm(ctx, node, missing, timeout); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		t.prefixMu.Lock()
		if t.armed[addr] == nil {
			t.armed[addr] = map[string]bool{}
			joined = joined || hadArmed
		}
		for _, p := range missing {
			t.armed[addr][p] = true
		}
		t.prefixMu.Unlock()
	}
	if len(errs) > 0 {
		return false, errors.Join(errs...)
	}
	for _, ns := range wanted {
		ns.armed.Store(true)
	}
	return joined, nil
}

// armNode adds prefixes to one node's listener connection. Redis refuses a prefix the
// connection tracks already (as overlapping itself): then it asks which it has, and adds the
// others.
func (t *tracker) armNode(ctx context.Context, node rueidis.Client, prefixes []string, timeout time.Duration) error {
	if len(prefixes) == 0 {
		return t.caller.DoOn(ctx, node, node.B().Ping().Build(), timeout).Error()
	}
	err := t.caller.DoOn(ctx, node, trackingCmd(node, prefixes), timeout).Error()
	if err == nil || !strings.Contains(err.Error(), "overlaps") {
		return err
	}
	info, err := t.caller.DoOn(ctx, node, node.B().ClientTrackinginfo().Build(), timeout).AsMap()
	if err != nil {
		return err
	}
	have := map[string]bool{}
	if list, ok := info["prefixes"]; ok {
		arr, _ := list.ToArray()
		for _, m := range arr {
			if s, err := m.ToString(); err == nil {
				have[s] = true
			}
		}
	}
	var rest []string
	for _, p := range prefixes {
		if !have[p] {
			rest = append(rest, p)
		}
	}
	if len(rest) == 0 {
		return nil
	}
	return t.caller.DoOn(ctx, node, trackingCmd(node, rest), timeout).Error()
}

// armNodeBroad makes one node's listener connection track the whole KeyPrefix: tracking off
// (the generation prefix it connected with overlaps the broad one), then on with it alone.
func (t *tracker) armNodeBroad(ctx context.Context, node rueidis.Client, _ []string, timeout time.Duration) error {
	if err := t.caller.DoOn(ctx, node, node.B().ClientTracking().Off().Build(), timeout).Error(); err != nil {
		return err
	}
	return t.caller.DoOn(ctx, node, node.B().Arbitrary("CLIENT", "TRACKING", "ON").Args(trackingOptions(t.keyPrefix)...).Build(), timeout).Error()
}

func trackingCmd(node rueidis.Client, prefixes []string) rueidis.Completed {
	args := make([]string, 0, 2*len(prefixes))
	for _, p := range prefixes {
		args = append(args, "PREFIX", p)
	}
	return node.B().Arbitrary("CLIENT", "TRACKING", "ON", "BCAST", "NOLOOP").Args(args...).Build()
}
