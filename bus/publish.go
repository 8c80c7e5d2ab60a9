package bus

import (
	"context"
	"fmt"

	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// batch is one future PUBLISH: the merge of every message enqueued while the previous batch
// was in flight (group commit). Until the sender takes it from the queue it is guarded by
// Bus.sendMu; afterwards only the sender touches it, until it closes done.
type batch struct {
	keys     []string
	keySet   map[string]struct{}
	groups   []string
	groupSet map[string]struct{}
	flushAll bool
	size     int // encoded size of keys and groups

	done chan struct{} // closed by the sender once err is set
	err  error
}

func newBatch() *batch {
	return &batch{keySet: make(map[string]struct{}), groupSet: make(map[string]struct{}), done: make(chan struct{})}
}

func (bt *batch) fits(keys int, s string) bool {
	if bt.size == 0 {
		return true // an empty batch takes any item that passed the size check
	}
	return len(bt.keys)+keys <= MaxBatchKeys && bt.size+stringSize(s) <= MaxBatchBytes
}

// Publish sends m to every other instance. Origin and Seq are set by the bus. Publish returns
// once the batch carrying m has been published (nil), has failed (its error), ctx has ended, or
// the bus is closed (ErrClosed).
//
// When no PUBLISH is in flight m goes out at once; messages published while one is in flight
// are merged (keys and groups de-duplicated, FlushAll OR-ed) into one next PUBLISH, split at
// MaxBatchKeys keys or MaxBatchBytes bytes. A message with nothing to invalidate is a no-op.
func (b *Bus) Publish(ctx context.Context, m Message) error {
	if m.empty() {
		return nil
	}
	for _, s := range [][]string{m.Keys, m.Groups} {
		for _, k := range s {
			if stringSize(k) > MaxBatchBytes {
				b.stats.publishErrors.Add(1)
				return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(k))
			}
		}
	}
	b.sendMu.Lock()
	if b.closed {
		b.sendMu.Unlock()
		b.stats.publishErrors.Add(1)
		return fmt.Errorf("bus: publish: %w", ErrClosed)
	}
	batches := b.enqueueLocked(m)
	b.sendMu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default: // the sender is already due to look at the queue
	}
	for _, bt := range batches {
		select {
		case <-bt.done:
			if bt.err != nil {
				b.stats.publishErrors.Add(1)
				return bt.err
			}
		case <-ctx.Done():
			b.stats.publishErrors.Add(1)
			return fmt.Errorf("bus: publish: %w", context.Cause(ctx))
		}
	}
	b.stats.published.Add(1)
	return nil
}

// enqueueLocked merges m into the queue's last batch, opening new ones when it is full, and
// returns the batches that carry part of m.
func (b *Bus) enqueueLocked(m Message) []*batch {
	var touched []*batch
	tail := func() *batch {
		if len(b.queue) == 0 {
			b.queue = append(b.queue, newBatch())
		}
		bt := b.queue[len(b.queue)-1]
		if len(touched) == 0 || touched[len(touched)-1] != bt {
			touched = append(touched, bt)
		}
		return bt
	}
	next := func() *batch {
		b.queue = append(b.queue, newBatch())
		return tail()
	}
	bt := tail()
	if m.FlushAll {
		bt.flushAll = true
	}
	for _, g := range m.Groups {
		if _, dup := bt.groupSet[g]; dup {
			continue
		}
		if !bt.fits(0, g) {
			bt = next()
		}
		bt.groupSet[g] = struct{}{}
		bt.groups = append(bt.groups, g)
		bt.size += stringSize(g)
	}
	for _, k := range m.Keys {
		if _, dup := bt.keySet[k]; dup {
			continue
		}
		if !bt.fits(1, k) {
			bt = next()
		}
		bt.keySet[k] = struct{}{}
		bt.keys = append(bt.keys, k)
		bt.size += stringSize(k)
	}
	return touched
}

// sendLoop is the one sender goroutine: it publishes the queued batches one at a time, oldest
// first, and fails whatever is left with ErrClosed when the bus closes.
func (b *Bus) sendLoop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.wake:
		case <-b.ctx.Done():
			b.failQueue()
			return
		}
		for {
			b.sendMu.Lock()
			if len(b.queue) == 0 {
				b.queue = nil // let the backing array go after a burst
				b.sendMu.Unlock()
				break
			}
			bt := b.queue[0]
			b.queue[0] = nil
			b.queue = b.queue[1:]
			b.sendMu.Unlock()

			bt.err = b.send(bt)
			close(bt.done)
			if b.ctx.Err() != nil {
				b.failQueue()
				return
			}
		}
	}
}

func (b *Bus) send(bt *batch) error {
	m := Message{
		Origin:   b.opts.InstanceID,
		Seq:      b.seq.Add(1),
		Keys:     bt.keys,
		Groups:   bt.groups,
		FlushAll: bt.flushAll,
	}
	// The payload is not reused: rueidis may still hold the command after a timed-out Do.
	payload := rueidis.BinaryString(Encode(m))
	var cmd rueidis.Completed
	if b.sharded {
		cmd = b.client.B().Spublish().Channel(b.opts.Channel).Message(payload).Build()
	} else {
		cmd = b.client.B().Publish().Channel(b.opts.Channel).Message(payload).Build()
	}
	// The caller applies PublishTimeout with a timer, not a context deadline (see
	// rcall.Options.TimerDeadline): Close must not wait out a publish.
	if err := b.caller.Do(b.ctx, cmd).Error(); err != nil {
		b.stats.batchErrors.Add(1)
		if b.ctx.Err() != nil {
			return fmt.Errorf("bus: publish: %w", ErrClosed)
		}
		b.log.Warn("bus: publish failed", zap.Error(err), zap.Int("keys", len(m.Keys)), zap.Int("groups", len(m.Groups)))
		return fmt.Errorf("bus: publish: %w", err)
	}
	b.stats.batches.Add(1)
	return nil
}

func (b *Bus) failQueue() {
	b.sendMu.Lock()
	queue := b.queue
	b.queue = nil
	b.sendMu.Unlock()
	for _, bt := range queue {
		bt.err = fmt.Errorf("bus: publish: %w", ErrClosed)
		close(bt.done)
	}
}
