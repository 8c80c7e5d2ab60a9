package tiered

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/synspirit/tiercache/bus"
)

// Invalidation across instances beyond what tracking reports: the bus, group generations and
// Flush.
//
// In Tracking mode Redis reports every change to a key under KeyPrefix, so Set and Delete
// publish nothing; the bus carries what tracking cannot see: group clears and Flush. In
// BusOnly mode every Set and Delete is published too.
//
// Group.Clear is O(1): each group has a generation in Redis (<KeyPrefix>tiercache:gen:<name>)
// that is part of its keys' names (<KeyPrefix><name>@<gen>:<key>, from <KeyPrefix><name>@0:<key>
// at generation 0). Clear increments it: every old key becomes unreachable at once and simply
// expires. Instances learn of the new generation from tracking (the generation key is under
// KeyPrefix) and from the bus, and re-read it on their next use of the group.

// busChannel is the pub/sub channel of a cache's instances.
func busChannel(keyPrefix string) string { return keyPrefix + "tiercache:invalidate" }

func genKeyPrefix(keyPrefix string) string { return keyPrefix + reservedPrefix + ":gen:" }

// reservedPrefix starts every key the cache keeps for itself (under KeyPrefix): group
// generations, load and refresh locks, the bus channel. No group name starts with it.
const reservedPrefix = "tiercache"

func (c *Cache) startBus(ctx context.Context) error {
	var raw []string
	if c.opts.KeyspaceNotifications {
		if c.redis.Mode() == rueidis.ClientModeCluster {
			return fmt.Errorf("%w: KeyspaceNotifications on a cluster", ErrInvalidOptions)
		}
		if c.opts.ConfigureKeyspaceNotifications {
			if err := c.configureKeyspaceNotifications(ctx); err != nil {
				return err
			}
		}
		prefix := "__keyevent@" + strconv.Itoa(c.db) + "__:"
		raw = []string{prefix + "expired", prefix + "evicted"}
	}
	b, err := bus.New(ctx, c.client, bus.Options{
		RawChannels: raw,
		OnRaw: func(_, key string) {
			if strings.HasPrefix(key, c.opts.KeyPrefix) {
				c.invalidateRedisKey(key)
				c.st.invKeyspace.Add(1)
			}
		},
		Channel:   busChannel(c.opts.KeyPrefix),
		Logger:    c.opts.Logger,
		OnMessage: c.onBusMessage,
		OnReset: func() {
			c.flushL1()
			c.log.Info("invalidation bus resubscribed: messages may have been lost, L1 flushed")
		},
		PublishTimeout: c.opts.Timeout,
		// StartWithoutRedis: subscribe whenever Redis answers, without holding New. Tracking
		// covers keys and group generations meanwhile; a Flush sent before the subscription
		// is not heard, so L1 is flushed once it is up.
		Background: c.opts.StartWithoutRedis,
	})
	if err != nil {
		return err
	}
	c.bus = b
	if c.opts.StartWithoutRedis {
		c.life.Go(func() {
			select {
			case <-b.Ready():
				c.flushL1()
				c.log.Info("invalidation bus subscribed: L1 flushed (messages sent before were not heard)")
			case <-c.life.Done():
			}
		})
	}
	return nil
}

// onBusMessage runs on the bus's receive goroutine: counters only.
func (c *Cache) onBusMessage(m bus.Message) {
	if m.FlushAll {
		c.flushL1()
	}
	for _, k := range m.Keys {
		c.invalidateRedisKey(k)
	}
	for _, name := range m.Groups {
		c.invalidateGroupGen(name)
	}
	c.st.invBus.Add(uint64(len(m.Keys) + len(m.Groups)))
}

// invalidateRedisKey handles a changed Redis key, whoever reported it.
func (c *Cache) invalidateRedisKey(k string) {
	c.l1.Invalidate(xxhash.Sum64String(k))
	if name, ok := strings.CutPrefix(k, c.genPrefix); ok {
		c.invalidateGroupGen(name)
	}
}

// invalidateGroupGen makes the group of that name re-read its generation before its next
// use. Safe on a reader goroutine: no lock, one small allocation.
func (c *Cache) invalidateGroupGen(name string) {
	if ns, ok := c.groups.lookup(name); ok {
		ns.forgetGen()
	}
}

// publish tells the other instances; a failure is logged and counted, not returned: the
// write itself succeeded, and the L1 TTL cap bounds what a lost message can cost.
func (c *Cache) publish(ctx context.Context, m bus.Message) {
	if c.bus == nil {
		return
	}
	if err := c.bus.Publish(ctx, m); err != nil {
		c.st.publishErrors.Add(1)
		c.log.Warn("invalidation not published", zap.Int("keys", len(m.Keys)), zap.Strings("groups", m.Groups), zap.Error(err))
	}
}

// Flush drops every instance's L1 (this one at once, the others through the bus). Redis
// keeps its entries: use Group.Clear to drop a group's entries everywhere.
func (c *Cache) Flush(ctx context.Context) error {
	if c.isClosed() {
		return ErrClosed
	}
	c.flushL1()
	if c.bus == nil {
		return nil
	}
	if err := c.bus.Publish(ctx, bus.Message{FlushAll: true}); err != nil {
		return fmt.Errorf("tiered: flush: %w", err)
	}
	return nil
}

func parseGen(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) }

// configureKeyspaceNotifications adds "Exe" (key-event notifications of expired and evicted
// keys) to the server's notify-keyspace-events, keeping what is already there.
func (c *Cache) configureKeyspaceNotifications(ctx context.Context) error {
	cur, err := c.caller.Do(ctx, c.caller.B().ConfigGet().Parameter("notify-keyspace-events").Build()).AsStrMap()
	if err != nil {
		return fmt.Errorf("tiered: reading notify-keyspace-events: %w", err)
	}
	flags := cur["notify-keyspace-events"]
	want := flags
	for _, f := range "Exe" {
		if !strings.ContainsRune(want, f) && !(f != 'E' && strings.ContainsRune(want, 'A')) {
			want += string(f)
		}
	}
	if want == flags {
		return nil
	}
	if err := c.caller.Do(ctx, c.caller.B().ConfigSet().ParameterValue().ParameterValue("notify-keyspace-events", want).Build()).Error(); err != nil {
		return fmt.Errorf("tiered: CONFIG SET notify-keyspace-events %s: %w", want, err)
	}
	c.log.Info("keyspace notifications configured", zap.String("notify-keyspace-events", want))
	return nil
}

// track makes writes to ns's keys reach this instance, so that its values may go to L1: the
// tracking listener adds its prefix (and marks it armed when it is tracked everywhere);
// without a listener, every write reaches the instance already (the bus in BusOnly mode, or
// the caller's own tracking client).
func (c *Cache) track(ns *namespace) {
	if c.tracker != nil {
		c.tracker.want(ns)
		return
	}
	ns.armed.Store(true)
}
