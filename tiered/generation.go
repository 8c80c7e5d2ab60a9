package tiered

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"

	"go.uber.org/zap"

	"github.com/synspirit/tiercache/bus"
	"github.com/synspirit/tiercache/internal/rcall"
)

// Group generations, which make Clear O(1).
//
// A group's keys are named after its generation (<KeyPrefix><name>@<gen>:<key>), kept in
// <KeyPrefix>tiercache:gen:<name>. A generation is a random 64-bit number (in base 36), never
// a count: a count that restarts at 0 when its key is lost (evicted under allkeys-lru,
// deleted by hand, lost in a failover) would name old keys again and bring cleared values
// back. A random generation can only be new: losing the key makes the group look cleared,
// nothing more. The key is read and, when missing or unreadable (anything but a generation,
// a value of another type), replaced by a new generation in one script; Clear sets a new one.
// Instances hear of the change from tracking (the generation keys have a tracked prefix of
// their own) and from the bus, and read the generation again on the group's next use.

// genScript returns the generation in KEYS[1], first replacing what is there by ARGV[1]
// unless it is a generation (with a TTL of ARGV[2] ms if given: tag versions). Its reply is
// {generation, "ok" | "created" | "replaced"}.
var genScript = rcall.NewScript(`
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'string' and #v > 0 and #v <= 13 and not string.find(v, '[^0-9a-z]') then
  return {v, 'ok'}
end
local how = 'created'
if type(v) == 'table' and v.err then
  redis.call('DEL', KEYS[1])
  how = 'replaced'
elseif type(v) == 'string' then
  how = 'replaced'
end
if ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
return {ARGV[1], how}
`)

// newGen is a generation no one has used: 64 random bits, in base 36 (at most 13 characters).
func newGen() string { return strconv.FormatUint(rand.Uint64()|1, 36) }

// resolve returns the group's current state, reading its generation from Redis when it is
// not known (first use, after a Clear anywhere, after a flush).
func (g *groupCore) resolve(ctx context.Context) (*groupState, error) {
	cur := g.ns.state.Load()
	if cur.known {
		return cur, nil
	}
	reply, err := g.c.caller.Exec(ctx, genScript, []string{g.ns.genKey}, []string{newGen()}).ToArray()
	if err != nil {
		return nil, err
	}
	if len(reply) != 2 {
		return nil, fmt.Errorf("generation of %s: unexpected reply of %d values", g.name, len(reply))
	}
	gen, err1 := reply[0].ToString()
	how, err2 := reply[1].ToString()
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("generation of %s: %w", g.name, err)
	}
	switch how {
	case "replaced":
		g.c.st.gensLost.Add(1)
		g.c.log.Warn("group generation key held something else: replaced by a new generation (the group looks cleared)",
			zap.String("key", g.ns.genKey))
	case "created":
		if g.ns.lastKnown.Load() != nil { // it existed: evicted, deleted or lost in a failover
			g.c.st.gensLost.Add(1)
			g.c.log.Warn("group generation key lost: a new generation (the group looks cleared)", zap.String("key", g.ns.genKey))
		}
	}
	st := newGroupState(g.c.hash, g.c.opts.KeyPrefix, g.name, gen)
	g.ns.state.CompareAndSwap(cur, st) // lost to an invalidation: use st once, re-read next time
	g.ns.lastKnown.Store(st)
	return st, nil
}

// Clear drops every entry of the group, on every instance, in O(1): it moves the group to
// a new generation, so the old keys are no longer read and expire by themselves. No KEYS,
// no SCAN.
func (g *Group[T]) Clear(ctx context.Context) error {
	if g.err != nil {
		return g.err
	}
	if g.c.isClosed() {
		return ErrClosed
	}
	if err := g.c.caller.Do(ctx, g.c.caller.B().Set().Key(g.ns.genKey).Value(newGen()).Build()).Error(); err != nil {
		return g.fail("clear", "*", err)
	}
	g.ns.forgetGen()
	g.c.publish(ctx, bus.Message{Groups: []string{g.name}})
	return nil
}
