package tiered

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/synspirit/tiercache/internal/rcall"
)

// Distributed stampede protection (Options.LoadLockTTL).
//
// Within an instance, concurrent GetOrLoad calls of a key share one load. Across instances a
// cold key would still be loaded once per instance; with LoadLockTTL the first instance to
// miss takes a lock in Redis (SET NX PX) and loads, and the others poll Redis for the value
// with a backoff (2 ms doubling to 50 ms). The lock is released by its owner only
// (compare-and-delete), and a lock left behind by a dead instance expires after LoadLockTTL,
// after which a waiter takes it over. If Redis cannot be reached, each instance loads on its
// own: availability before deduplication.

const (
	lockPollMin = 2 * time.Millisecond
	lockPollMax = 50 * time.Millisecond
)

var releaseLockScript = rcall.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

func (c *Cache) lockKey(redisKey string) string {
	return c.opts.KeyPrefix + "tiercache:lock:" + strings.TrimPrefix(redisKey, c.opts.KeyPrefix)
}

// waitOrLock either takes the load lock of a key (release must then be called once the
// value is stored) or waits for another instance to store the value, which it returns with
// found. When neither works out (Redis unreachable, the lock outlived its TTL) it returns
// neither, and the caller loads on its own.
func (g *Group[T]) waitOrLock(ctx context.Context, st *groupState, key string, h uint64) (v any, found bool, release func(), err error) {
	c := g.c
	ttl := c.opts.LoadLockTTL
	lk := c.lockKey(st.base + key)
	var tok [8]byte
	_, _ = rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	giveUp := time.Now().Add(ttl)
	poll := lockPollMin
	for {
		res := c.caller.Do(ctx, c.caller.B().Set().Key(lk).Value(token).Nx().PxMilliseconds(max(ttl.Milliseconds(), 1)).Build())
		switch err := res.Error(); {
		case err == nil:
			return nil, false, func() {
				_ = c.caller.Exec(context.WithoutCancel(ctx), releaseLockScript, []string{lk}, []string{token}).Error()
			}, nil
		case !rueidis.IsRedisNil(err):
			return nil, false, func() {}, nil // no lock to be had: load on our own
		}
		// Another instance is loading.
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false, nil, ctx.Err()
		case <-t.C:
		}
		poll = min(2*poll, lockPollMax)
		if v, err := g.fetch(ctx, st, key, h); err == nil {
			c.st.lockWaits.Add(1)
			return v, true, nil, nil
		}
		if time.Now().After(giveUp) {
			return nil, false, func() {}, nil
		}
	}
}
