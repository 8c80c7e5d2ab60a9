package bus

import (
	"errors"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// Resubscribe back-off after Receive returns with an error.
const (
	minResubscribeDelay = 10 * time.Millisecond
	maxResubscribeDelay = time.Second
)

var (
	errHooksDetached      = errors.New("bus: pub/sub hooks detached")
	errServerUnsubscribed = errors.New("bus: the server ended the subscription (a cluster slot moved)")
)

// receiveLoop is the receive goroutine: it keeps a subscription up until Close.
//
// Each subscription gets its own dedicated connection with pub/sub hooks rather than
// Client.Receive, because rueidis recovers Receive only partly by itself: with RESP2 the
// subscription lives on a side connection that, once killed (CLIENT KILL TYPE pubsub), is
// not replaced while the main connection stays healthy, and Receive retries against it
// forever. A dedicated connection is discarded on any error and the next attempt starts from a
// fresh one, whatever the protocol. Readiness and resets are driven by the server's subscribe
// confirmations (onSubscription), not by this loop, so every path back to a live subscription
// is seen.
func (b *Bus) receiveLoop() {
	defer b.wg.Done()
	delay := minResubscribeDelay
	for {
		before := b.stats.subscriptions.Load()
		err := b.subscribeOnce()
		if b.ctx.Err() != nil {
			return
		}
		if b.stats.subscriptions.Load() != before {
			delay = minResubscribeDelay // it worked for a while: retry promptly
		}
		if b.stats.subscriptions.Load() == 0 {
			// Never subscribed yet (Options.Background, Redis not up): not news each time.
			b.log.Debug("bus: not subscribed yet, retrying", zap.Error(err), zap.Duration("after", delay))
		} else {
			b.stats.losses.Add(1)
			if b.opts.OnLost != nil {
				b.opts.OnLost()
			}
			b.log.Warn("bus: subscription lost, resubscribing", zap.Error(err), zap.Duration("after", delay))
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-b.ctx.Done():
			t.Stop()
			return
		}
		delay = min(2*delay, maxResubscribeDelay)
	}
}

// subscribeOnce subscribes on a new dedicated connection and returns when that connection is
// lost (its error) or the bus closes (nil). The connection is closed, never put back in the
// client's pool.
func (b *Bus) subscribeOnce() error {
	dc, release := b.client.Dedicate()
	defer release()
	defer dc.Close()
	select { // a stale signal from the previous connection
	case <-b.unsubscribed:
	default:
	}
	lost := dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: b.onPubSub, OnSubscription: b.onSubscription})
	if len(b.opts.RawChannels) > 0 {
		// Before the bus channel: its confirmation is what signals ready or reset, and by
		// then nothing sent on the raw channels can be missed any more.
		if err := b.caller.DoOn(b.ctx, dc, dc.B().Subscribe().Channel(b.opts.RawChannels...).Build(), b.opts.SubscribeTimeout).Error(); err != nil {
			return err
		}
	}
	var cmd rueidis.Completed
	if b.sharded {
		cmd = dc.B().Ssubscribe().Channel(b.opts.Channel).Build()
	} else {
		cmd = dc.B().Subscribe().Channel(b.opts.Channel).Build()
	}
	if err := b.caller.DoOn(b.ctx, dc, cmd, b.opts.SubscribeTimeout).Error(); err != nil {
		return err
	}
	select {
	case err, ok := <-lost:
		if !ok || err == nil {
			err = errHooksDetached
		}
		return err
	case <-b.unsubscribed:
		return errServerUnsubscribed
	case <-b.ctx.Done():
		return nil
	}
}

// onSubscription runs on the reader goroutine of the bus's connection for every (un)subscribe
// confirmation, in order with the messages: a reset is signalled before any message of the new
// subscription is delivered.
func (b *Bus) onSubscription(s rueidis.PubSubSubscription) {
	if s.Channel != b.opts.Channel {
		return
	}
	if s.Kind == "sunsubscribe" || s.Kind == "unsubscribe" {
		// The bus never unsubscribes: the server did, e.g. a cluster node that lost the
		// channel's slot (failover, migration). Resubscribe where the slot is now.
		select {
		case b.unsubscribed <- struct{}{}:
		default:
		}
		return
	}
	if s.Kind != "subscribe" && s.Kind != "ssubscribe" {
		return
	}
	if b.stats.subscriptions.Add(1) == 1 {
		b.log.Debug("bus: subscribed")
		close(b.ready)
		return
	}
	b.stats.resets.Add(1)
	b.log.Info("bus: resubscribed; messages may have been lost")
	if b.opts.OnReset != nil {
		b.opts.OnReset()
	}
}

// onPubSub runs on the reader goroutine of the bus's connection for every message.
func (b *Bus) onPubSub(msg rueidis.PubSubMessage) {
	if msg.Channel != b.opts.Channel {
		if b.opts.OnRaw != nil {
			b.stats.raw.Add(1)
			b.opts.OnRaw(msg.Channel, msg.Message)
		}
		return
	}
	m, err := decode(msg.Message)
	if err != nil {
		b.stats.malformed.Add(1)
		b.log.Debug("bus: dropping malformed message", zap.Error(err), zap.Int("bytes", len(msg.Message)))
		return
	}
	if m.Origin == b.opts.InstanceID {
		b.stats.ignored.Add(1)
		return
	}
	b.stats.received.Add(1)
	if b.opts.OnMessage != nil {
		b.opts.OnMessage(m)
	}
}
