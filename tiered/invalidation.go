package tiered

import (
	"context"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"time"

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
			c.busSeq = nil // messages were lost; a sender's numbering is news again
			c.flushL1()
			if c.mode == BusOnly {
				c.l1.Resume()
			}
			c.log.Info("invalidation bus resubscribed: messages may have been lost, L1 flushed")
		},
		OnLost: func() {
			// In BusOnly mode the bus is how writes are heard: until it is back, L1 is off, as
			// it is when the tracking listener drops. (With tracking, the bus carries only Clear
			// and Flush, which tracking covers too, and L1 is flushed when it is back.)
			if c.mode == BusOnly && c.l1.Pause() {
				c.flushL1()
				c.log.Warn("invalidation bus lost: L1 flushed and off until it is back")
			}
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

// onBusMessage runs on the bus's receive goroutine: counters only. Each sender numbers its
// messages; a gap means one was lost (a PUBLISH that failed after its write succeeded), and
// L1 is flushed.
func (c *Cache) onBusMessage(m bus.Message) {
	if last, ok := c.busSeq[m.Origin]; ok && m.Seq != last+1 && m.Seq > last {
		c.flushL1()
		c.log.Warn("invalidation bus: a message of another instance was lost; L1 flushed",
			zap.String("origin", m.Origin), zap.Uint64("expected", last+1), zap.Uint64("got", m.Seq))
	}
	if c.busSeq == nil || len(c.busSeq) > maxBusOrigins {
		c.busSeq = make(map[string]uint64) // instances come and go: forget them now and then
	}
	c.busSeq[m.Origin] = m.Seq
	if m.FlushAll {
		c.flushL1()
	}
	for _, k := range m.Keys {
		if h, ok := c.invalidateRedisKey(k); ok {
			// Another instance's write or Delete (the bus carries no expiry): a load here
			// whose read found nothing yields to it, as to this instance's (see storeCond).
			c.wrote.bump(h)
		}
	}
	for _, name := range m.Groups {
		c.invalidateGroupGen(name)
	}
	c.st.invBus.Add(uint64(len(m.Keys) + len(m.Groups)))
}

// invalidateRedisKey handles a changed Redis key, whoever reported it: a group's value (its
// L1 entry, whose hash it returns with ok), or a group's generation. Anything else is no L1
// entry's.
func (c *Cache) invalidateRedisKey(k string) (h uint64, ok bool) {
	if name, ok := strings.CutPrefix(k, c.genPrefix); ok {
		if tag, ok := strings.CutPrefix(name, "@"); ok { // no group name has '@'
			c.tags.heard(tag)
			return 0, false
		}
		c.invalidateGroupGen(name)
		return 0, false
	}
	if base, key, ok := splitRedisKey(c.opts.KeyPrefix, k); ok {
		h = c.hash.key(c.hash.base(base), key)
		c.l1.Invalidate(h)
		return h, true
	}
	return 0, false
}

// splitRedisKey splits a group value's Redis key, <keyPrefix><name>@<gen>:<key>, into its
// base (up to and with the ':') and key. A group name has no '@' and a generation no ':', so
// the first '@' after the prefix and the first ':' after it end them.
func splitRedisKey(keyPrefix, k string) (base, key string, ok bool) {
	rest, ok := strings.CutPrefix(k, keyPrefix)
	if !ok {
		return "", "", false
	}
	at := strings.IndexByte(rest, '@')
	if at <= 0 {
		return "", "", false
	}
	colon := strings.IndexByte(rest[at+1:], ':')
	if colon <= 0 {
		return "", "", false
	}
	end := len(keyPrefix) + at + 1 + colon + 1
	return k[:end], k[end:], true
}

// hasher makes the L1's keys: a hash of a value's full Redis key, made of a hash of its
// group's base (once per generation) and of its key, so that a lookup hashes only the key.
// Its seed is the cache's own: no one outside can make two keys collide on purpose.
type hasher struct{ seed maphash.Seed }

func newHasher() hasher { return hasher{seed: maphash.MakeSeed()} }

// base is the base's hash, mixed (multiplied by an odd constant, a bijection) so that it is
// never another string's plain hash: keys that spell bases would otherwise collide on
// purpose, (b1, "b2") with (b2, "b1") and (b, "b") with every other group's (b', "b'") at 0.
func (hs hasher) base(base string) uint64 { return maphash.String(hs.seed, base) * baseMix }

// baseMix is 2^64 divided by the golden ratio, rounded to odd.
const baseMix = 0x9e3779b97f4a7c15

// key is bh ^ the key's hash: the key's hash is uniform, so for one base the result is too,
// and two (base, key) pairs collide only when the two key hashes differ by exactly the two
// mixed base hashes' difference (one chance in 2^64; the seed is secret).
func (hs hasher) key(bh uint64, key string) uint64 { return bh ^ maphash.String(hs.seed, key) }

// invalidateGroupGen makes the group of that name re-read its generation before its next
// use. Safe on a reader goroutine: no lock, one small allocation.
func (c *Cache) invalidateGroupGen(name string) {
	if ns, ok := c.groups.lookup(name); ok {
		ns.forgetGen()
	}
}

// maxBusOrigins bounds the senders whose numbering a receiver remembers.
const maxBusOrigins = 4096

// publish tells the other instances. A failure is not returned (the write itself succeeded):
// it is counted, logged, and the message is sent again in the background until it goes
// through or the L1 TTL cap has passed (after which no instance holds what it invalidates);
// meanwhile the other instances see a gap in this sender's numbering at its next message.
func (c *Cache) publish(ctx context.Context, m bus.Message) {
	if c.bus == nil {
		return
	}
	if err := c.bus.Publish(ctx, m); err != nil {
		c.st.publishErrors.Add(1)
		c.log.Warn("invalidation not published: sending it again", zap.Int("keys", len(m.Keys)), zap.Strings("groups", m.Groups), zap.Error(err))
		c.republish.add(c, m)
	}
}

// republisher sends again, in the background, the messages whose publish failed.
type republisher struct {
	mu       sync.Mutex // protects the fields below
	pending  bus.Message
	deadline time.Time // give up after: no L1 entry lives longer
	running  bool      // a goroutine is sending
}

const (
	republishMin = 10 * time.Millisecond
	republishMax = time.Second
)

func (r *republisher) add(c *Cache, m bus.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending.Keys = append(r.pending.Keys, m.Keys...)
	r.pending.Groups = append(r.pending.Groups, m.Groups...)
	r.pending.FlushAll = r.pending.FlushAll || m.FlushAll
	longest := c.l1.TTLCap()
	if longest == 0 {
		longest = DefaultBusOnlyL1TTL
	}
	r.deadline = time.Now().Add(longest)
	if !r.running && c.life.Go(func() { r.run(c) }) {
		r.running = true
	}
}

func (r *republisher) run(c *Cache) {
	ctx := c.life.Context()
	for delay := republishMin; ; delay = min(2*delay, republishMax) {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		r.mu.Lock()
		m, expired := r.pending, time.Now().After(r.deadline)
		r.pending = bus.Message{}
		if expired || (len(m.Keys) == 0 && len(m.Groups) == 0 && !m.FlushAll) {
			r.running = false
			r.mu.Unlock()
			if expired {
				c.log.Warn("invalidation given up: the L1 TTL cap has passed", zap.Int("keys", len(m.Keys)))
			}
			return
		}
		r.mu.Unlock()
		if err := c.bus.Publish(ctx, m); err != nil {
			r.mu.Lock()
			r.pending.Keys = append(r.pending.Keys, m.Keys...)
			r.pending.Groups = append(r.pending.Groups, m.Groups...)
			r.pending.FlushAll = r.pending.FlushAll || m.FlushAll
			r.mu.Unlock()
			continue
		}
		c.st.republished.Add(1)
		delay = republishMin / 2
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
		return &opError{op: "flush", err: err}
	}
	return nil
}

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
