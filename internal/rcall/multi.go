package rcall

import (
	"context"
	"fmt"

	"github.com/redis/rueidis"
)

// Multi-key commands, grouped by hash slot on a cluster (where one command may only touch
// one slot) and sent as one command elsewhere.

// MGet reads keys and returns their values in the order of keys (a missing key is a nil
// message), with one MGET per hash slot, pipelined, on a cluster.
func (c *Caller) MGet(ctx context.Context, keys []string) ([]rueidis.RedisMessage, error) {
	return c.MGetMoving(ctx, keys, 0)
}

// MGetMoving is MGet for replies of up to n bytes in all (see DoMoving).
func (c *Caller) MGetMoving(ctx context.Context, keys []string, n int64) ([]rueidis.RedisMessage, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	groups := c.bySlot(keys)
	b := c.client.B()
	cmds := make(rueidis.Commands, len(groups))
	for i, g := range groups {
		cmds[i] = b.Mget().Key(g.keys...).Build()
	}
	out := make([]rueidis.RedisMessage, len(keys))
	for i, r := range c.DoMultiMoving(ctx, n, cmds...) {
		vals, err := r.ToArray()
		if err != nil {
			return nil, err
		}
		g := groups[i]
		if len(vals) != len(g.keys) {
			return nil, fmt.Errorf("MGET of %d keys returned %d values", len(g.keys), len(vals))
		}
		for j, at := range g.at {
			out[at] = vals[j]
		}
	}
	return out, nil
}

// Del deletes keys: one DEL per hash slot on a cluster.
func (c *Caller) Del(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	groups := c.bySlot(keys)
	b := c.client.B()
	cmds := make(rueidis.Commands, len(groups))
	for i, g := range groups {
		cmds[i] = b.Del().Key(g.keys...).Build()
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

// slotGroup is keys of one hash slot, with their positions in the caller's slice.
type slotGroup struct {
	keys []string
	at   []int
}

func (c *Caller) bySlot(keys []string) []slotGroup {
	if c.client.Mode() != rueidis.ClientModeCluster {
		at := make([]int, len(keys))
		for i := range at {
			at[i] = i
		}
		return []slotGroup{{keys: keys, at: at}}
	}
	index := make(map[uint16]int)
	var groups []slotGroup
	for i, k := range keys {
		s := Slot(k)
		gi, ok := index[s]
		if !ok {
			gi = len(groups)
			index[s] = gi
			groups = append(groups, slotGroup{})
		}
		groups[gi].keys = append(groups[gi].keys, k)
		groups[gi].at = append(groups[gi].at, i)
	}
	return groups
}

// Slot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of the key, or of its hash tag
// (the part between the first '{' and the next '}', when not empty), modulo 16384.
func Slot(key string) uint16 {
	if i := indexByte(key, '{'); i >= 0 {
		if j := indexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) & 16383
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
