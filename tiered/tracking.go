package tiered

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// Server-assisted tracking, on a connection of its own.
//
// The cache listens for invalidations on a separate, otherwise idle rueidis client with
// CLIENT TRACKING ON BCAST PREFIX <KeyPrefix>, and reads and writes through a plain client.
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
//   - The cost of BCAST is that every instance hears of every write under the prefix; for a
//     cache (read-mostly by definition) that is cheap, and it is a single atomic add each.
//
// The listener is sound only while it is connected: a dropped connection loses
// invalidations. rueidis reports a drop as OnInvalidations(nil); the cache then flushes L1
// and stops filling it until a PING through the listener succeeds again (which proves that
// a new connection is up and has re-sent CLIENT TRACKING), and flushes once more at that
// point, since writes between the drop and the reconnection were not heard. A keeper PING
// that gets no answer in time, without an error, counts as a drop only the second time in a
// row: in a process whose every P is busy the reply can wait in the run queue past the
// timeout, and flushing L1 then would turn an overload into Redis load. A listener that is
// really stuck is closed by rueidis itself (no reply to its keepalive PING within
// ConnWriteTimeout), which reports it as a drop.

const (
	trackingCheckInterval = time.Second
	trackingRetryMin      = 10 * time.Millisecond
	trackingRetryMax      = time.Second
)

type tracker struct {
	c      *Cache
	client rueidis.Client
	kick   chan struct{} // size 1: wake the keeper after a drop

	// liveMu orders drops against the keeper turning L1 on: a drop reported while a check
	// was in flight must not be overwritten by that check's success.
	liveMu sync.Mutex
	drops  uint64 // drops reported by rueidis; guarded by liveMu

	pingHook atomic.Pointer[func(context.Context, time.Duration) error] // tests: replaces ping
}

func (c *Cache) startTracker(ctx context.Context, opt rueidis.ClientOption) error {
	t := &tracker{c: c, kick: make(chan struct{}, 1)}
	opt.DisableCache = false
	opt.ClientTrackingOptions = TrackingOptions(c.opts.KeyPrefix)
	opt.OnInvalidations = t.onInvalidations
	opt.PipelineMultiplex = -1 // one connection per node is enough to listen
	opt.BlockingPoolSize = 1
	opt.CacheSizeEachConn = 1 << 16 // rueidis's own client-side cache stays unused
	opt.ClientName += "-tracking"
	// The listener only PINGs, so it would not notice a cluster's topology change by
	// itself: refresh it as often as it is checked.
	opt.ClusterOption.ShardsRefreshInterval = trackingCheckInterval
	client, err := c.newClient(ctx, opt)
	t.client = client
	if err == nil {
		err = t.ping(ctx, opt.Dialer.Timeout) // at start-up, as patient as a dial
	}
	if err != nil && !c.mayStartWithout(ctx, client, err) {
		if client != nil {
			client.Close()
		}
		return err
	}
	c.tracker = t
	// Offline (StartWithoutRedis): L1 stays off until the keeper's PING goes through.
	c.l1.live.Store(err == nil)
	if err != nil {
		t.kick <- struct{}{} // check at once, then back off
	}
	c.wg.Add(1)
	go t.keep()
	return nil
}

// onInvalidations runs on rueidis's reader goroutine: counters only, and a non-blocking
// wake-up of the keeper.
func (t *tracker) onInvalidations(keys []rueidis.RedisMessage) {
	if keys == nil {
		t.liveMu.Lock()
		t.drops++
		t.c.l1.live.Store(false)
		t.liveMu.Unlock()
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
	t.c.HandleInvalidations(keys)
}

// keep checks the listener every trackingCheckInterval, and at once after a drop, and
// re-enables L1 fills when it answers again.
func (t *tracker) keep() {
	defer t.c.wg.Done()
	retry := trackingRetryMin
	slow := false          // the previous check timed out without an error
	refusedLogged := false // the listener's refusal by Redis has been logged
	timer := time.NewTimer(trackingCheckInterval)
	defer timer.Stop()
	for {
		select {
		case <-t.c.closeCtx.Done():
			return
		case <-t.kick:
		case <-timer.C:
		}
		t.liveMu.Lock()
		drops := t.drops
		t.liveMu.Unlock()
		pingTimeout := max(t.c.opts.Timeout, 500*time.Millisecond)
		err := t.check(t.c.closeCtx, pingTimeout)
		next := trackingCheckInterval
		switch {
		case t.c.closeCtx.Err() != nil:
			return
		case err != nil && onlySlow(err) && !slow && t.c.l1.live.Load():
			// No answer in time, but no error either: in a process whose every P is busy,
			// a reply can wait in the run queue longer than the timeout. Flushing L1 then
			// would add Redis load to an overload. A listener that is really stuck is closed
			// by rueidis itself (no reply to its keepalive PING within ConnWriteTimeout),
			// which reports it as a drop: ask once more, soon, before calling it lost.
			slow, next = true, pingTimeout
			t.c.log.Debug("tracking connection slow to answer; checking again", zap.Error(err))
		case err != nil:
			if t.c.l1.live.Swap(false) {
				t.c.flushL1()
				t.c.log.Warn("tracking connection lost: L1 flushed and off until it is back", zap.Error(err))
			} else if !unreachable(err) && !refusedLogged {
				// Redis answers, but not to the listener (e.g. CLIENT TRACKING refused).
				refusedLogged = true
				t.c.log.Error("tracking listener refused by redis: L1 stays off", zap.Error(err))
			}
			next, retry = retry, min(2*retry, trackingRetryMax)
			slow = false
		case !t.c.l1.live.Load():
			// Connected again, with tracking re-armed. Writes made while it was down
			// were not heard: flush before trusting fills again, unless it dropped again
			// while this check was in flight (then check again at once).
			t.liveMu.Lock()
			if t.drops == drops {
				t.c.flushL1()
				t.c.l1.live.Store(true)
			} else {
				next = 0
			}
			t.liveMu.Unlock()
			if t.c.l1.live.Load() {
				t.c.log.Info("tracking listener connected: L1 on")
			}
			retry, slow, refusedLogged = trackingRetryMin, false, false
		default:
			retry, slow = trackingRetryMin, false
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
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := node.Do(cctx, node.B().Ping().Build().Pin()).Error()
		cancel()
		if err != nil {
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
		if !errors.Is(e, context.DeadlineExceeded) && !errors.Is(e, os.ErrDeadlineExceeded) {
			return false
		}
	}
	return len(errs) > 0
}

func (t *tracker) close() { t.client.Close() }
