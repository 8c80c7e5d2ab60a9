package tiered

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/synspirit/tiercache/bus"
	"github.com/synspirit/tiercache/internal/rcall"
)

// Stats is a snapshot of a Cache's counters since New.
type Stats struct {
	Mode    InvalidationMode `json:"mode"`    // Tracking or BusOnly (JSON: "tracking", "bus-only")
	Breaker BreakerState     `json:"breaker"` // JSON: "closed", "open" or "half-open"

	L1Hits   uint64 `json:"l1_hits"`
	L1Misses uint64 `json:"l1_misses"`
	L2Hits   uint64 `json:"l2_hits"`
	L2Misses uint64 `json:"l2_misses"`
	L2Errors uint64 `json:"l2_errors"` // Redis calls that failed (including breaker rejections)

	Loads       uint64 `json:"loads"`        // loader calls
	LoadErrors  uint64 `json:"load_errors"`  // loader calls that returned an error or panicked
	LoadsShared uint64 `json:"loads_shared"` // GetOrLoad calls that joined another caller's load
	// LoadsYielded counts loaded values (and eager refreshes) not stored because the key was
	// written while the loader ran: the write stands (the README's consistency model).
	LoadsYielded uint64 `json:"loads_yielded"`
	Sets         uint64 `json:"sets"`
	Deletes      uint64 `json:"deletes"`

	DecodeErrors uint64 `json:"decode_errors"` // values in Redis that were not ours or corrupt
	TooLarge     uint64 `json:"too_large"`     // values refused with ErrTooLarge
	// GenerationsLost counts group generation keys found missing after use, or holding
	// something else: each such group then looks cleared.
	GenerationsLost uint64 `json:"generations_lost"`
	// TagsInvalidated counts the tags this instance invalidated (InvalidateTags); TagStale the
	// values found carrying a tag invalidated since they were stored (each then a miss).
	TagsInvalidated uint64 `json:"tags_invalidated"`
	TagStale        uint64 `json:"tag_stale"`

	Invalidations InvalidationStats `json:"invalidations"`
	Flushes       uint64            `json:"flushes"`        // whole-L1 invalidations (lost connection, FLUSHALL, breaker, Flush)
	BreakerOpens  uint64            `json:"breaker_opens"`  // times the breaker opened
	PublishErrors uint64            `json:"publish_errors"` // bus messages that could not be sent
	Republished   uint64            `json:"republished"`    // bus messages sent again after a failed publish
	// FailSafeServed counts stale values served because the loader (and perhaps Redis) failed.
	FailSafeServed uint64 `json:"fail_safe_served"`
	// LoadLockWaits counts loads avoided because another instance held the load lock.
	LoadLockWaits uint64 `json:"load_lock_waits"`
	// Refreshes and RefreshErrors count the background loads of eager refresh.
	Refreshes     uint64     `json:"refreshes"`
	RefreshErrors uint64     `json:"refresh_errors"`
	Bus           *bus.Stats `json:"bus,omitempty"` // nil without a bus
}

// InvalidationStats counts key invalidations by where they came from.
type InvalidationStats struct {
	Local    uint64 `json:"local"`    // this instance's writes and deletes
	Tracking uint64 `json:"tracking"` // Redis server-assisted tracking pushes
	Bus      uint64 `json:"bus"`      // other instances' messages on the bus (keys and group clears)
	Keyspace uint64 `json:"keyspace"` // keyspace notifications (expired, evicted)
}

// BreakerState is the state of the circuit breaker in front of Redis.
type BreakerState int32

const (
	// BreakerClosed: calls go to Redis.
	BreakerClosed BreakerState = BreakerState(rcall.Closed)
	// BreakerOpen: calls fail at once with ErrUnavailable, without waiting on Redis.
	BreakerOpen BreakerState = BreakerState(rcall.Open)
	// BreakerHalfOpen: one probe call is in flight; the others fail at once.
	BreakerHalfOpen BreakerState = BreakerState(rcall.HalfOpen)
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return "BreakerState(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText is the state's String.
func (s BreakerState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses what MarshalText writes.
func (s *BreakerState) UnmarshalText(b []byte) error {
	for _, v := range []BreakerState{BreakerClosed, BreakerOpen, BreakerHalfOpen} {
		if v.String() == string(b) {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("tiered: unknown breaker state %q", b)
}

// L1HitRatio is L1Hits / (L1Hits + L1Misses), 0 without lookups.
func (s Stats) L1HitRatio() float64 { return ratio(s.L1Hits, s.L1Misses) }

// L2HitRatio is L2Hits / (L2Hits + L2Misses), 0 without reads.
func (s Stats) L2HitRatio() float64 { return ratio(s.L2Hits, s.L2Misses) }

func ratio(hits, misses uint64) float64 {
	if hits+misses == 0 {
		return 0
	}
	return float64(hits) / float64(hits+misses)
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	hits, misses := c.l1.Stats()
	return Stats{
		Mode:            c.mode,
		Breaker:         BreakerState(c.breaker.State()),
		L1Hits:          hits,
		L1Misses:        misses,
		L2Hits:          c.st.l2Hits.Load(),
		L2Misses:        c.st.l2Misses.Load(),
		L2Errors:        c.st.l2Errors.Load(),
		Loads:           c.st.loads.Load(),
		LoadErrors:      c.st.loadErrors.Load(),
		LoadsShared:     c.flight.Joined(),
		LoadsYielded:    c.st.loadsYielded.Load(),
		Sets:            c.st.sets.Load(),
		Deletes:         c.st.deletes.Load(),
		DecodeErrors:    c.st.decodeErrors.Load(),
		TooLarge:        c.st.tooLarge.Load(),
		GenerationsLost: c.st.gensLost.Load(),
		TagsInvalidated: c.st.tagsInvalidated.Load(),
		TagStale:        c.st.tagStale.Load(),
		Invalidations:   InvalidationStats{Local: c.st.invLocal.Load(), Tracking: c.st.invTracking.Load(), Bus: c.st.invBus.Load(), Keyspace: c.st.invKeyspace.Load()},
		Flushes:         c.st.flushes.Load(),
		BreakerOpens:    c.breaker.Opens(),
		PublishErrors:   c.st.publishErrors.Load(),
		Republished:     c.st.republished.Load(),
		FailSafeServed:  c.st.failSafeServed.Load(),
		LoadLockWaits:   c.st.lockWaits.Load(),
		Refreshes:       c.st.refreshes.Load(),
		RefreshErrors:   c.st.refreshErrors.Load(),
		Bus:             c.busStats(),
	}
}

// GroupStats is a snapshot of one group's share of the cache's counters since New: the
// Stats fields of the same names, counted for this group's keys only. Every group of one
// name in a Cache shares them.
type GroupStats struct {
	L1Hits       uint64 `json:"l1_hits"` // sampled like Stats.L1Hits (exact with Options.ExactL1Stats)
	L1Misses     uint64 `json:"l1_misses"`
	L2Hits       uint64 `json:"l2_hits"`
	L2Misses     uint64 `json:"l2_misses"`
	L2Errors     uint64 `json:"l2_errors"` // reads of the group's values that failed (writes are not counted here)
	Loads        uint64 `json:"loads"`
	LoadErrors   uint64 `json:"load_errors"`
	LoadsYielded uint64 `json:"loads_yielded"`
}

// L1HitRatio is L1Hits / (L1Hits + L1Misses), 0 without lookups.
func (s GroupStats) L1HitRatio() float64 { return ratio(s.L1Hits, s.L1Misses) }

// GroupStats returns the counters of every group made on c (see [NewGroup]), by group name,
// image caches' included. Summed over the groups, each field but L2Errors is the
// [Cache.Stats] field of the same name; Stats.L2Errors also counts failed writes. It reads
// atomics only (about 40 per group), never Redis: fit for a metrics collector.
func (c *Cache) GroupStats() map[string]GroupStats {
	out := make(map[string]GroupStats)
	c.groups.byName.Range(func(_, v any) bool {
		ns := v.(*namespace)
		hits, misses := ns.owner.Stats()
		out[ns.name] = GroupStats{
			L1Hits:       hits,
			L1Misses:     misses,
			L2Hits:       ns.st.l2Hits.Load(),
			L2Misses:     ns.st.l2Misses.Load(),
			L2Errors:     ns.st.l2Errors.Load(),
			Loads:        ns.st.loads.Load(),
			LoadErrors:   ns.st.loadErrors.Load(),
			LoadsYielded: ns.st.loadsYielded.Load(),
		}
		return true
	})
	return out
}

func (c *Cache) busStats() *bus.Stats {
	if c.bus == nil {
		return nil
	}
	s := c.bus.Stats()
	return &s
}

// RedisInfo is what the stats endpoint reports of the Redis server, from INFO.
type RedisInfo struct {
	Keys             int64   `json:"keys"`
	UsedMemory       int64   `json:"used_memory"`
	UsedMemoryHuman  string  `json:"used_memory_human"`
	KeyspaceHits     int64   `json:"keyspace_hits"`
	KeyspaceMisses   int64   `json:"keyspace_misses"`
	KeyspaceHitRatio float64 `json:"keyspace_hit_ratio"`
	ConnectedClients int64   `json:"connected_clients"`
}

// RedisInfo reads INFO from the server the cache uses (one node of a cluster).
func (c *Cache) RedisInfo(ctx context.Context) (RedisInfo, error) {
	text, err := c.caller.Do(ctx, c.caller.B().Info().Build()).ToString()
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return RedisInfo{}, ErrClosed
		}
		return RedisInfo{}, &opError{op: "info", err: err}
	}
	return parseInfo(text), nil
}

func parseInfo(text string) RedisInfo {
	var ri RedisInfo
	num := func(v string) int64 { n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64); return n }
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch {
		case k == "used_memory":
			ri.UsedMemory = num(v)
		case k == "used_memory_human":
			ri.UsedMemoryHuman = v
		case k == "keyspace_hits":
			ri.KeyspaceHits = num(v)
		case k == "keyspace_misses":
			ri.KeyspaceMisses = num(v)
		case k == "connected_clients":
			ri.ConnectedClients = num(v)
		case strings.HasPrefix(k, "db"): // db0:keys=1,expires=0,avg_ttl=0
			for _, f := range strings.Split(v, ",") {
				if n, ok := strings.CutPrefix(f, "keys="); ok {
					ri.Keys += num(n)
				}
			}
		}
	}
	ri.KeyspaceHitRatio = ratio(uint64(max(ri.KeyspaceHits, 0)), uint64(max(ri.KeyspaceMisses, 0)))
	return ri
}

// StatsHandler serves the original /api/cache-stats: the cache's counters and hit ratios,
// and the Redis key count, memory, keyspace hit ratio and connected clients from INFO.
// When Redis cannot be reached the counters are still served, with "redis_error" set.
func StatsHandler(c *Cache) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		s := c.Stats()
		body := struct {
			Stats
			L1HitRatio float64    `json:"l1_hit_ratio"`
			L2HitRatio float64    `json:"l2_hit_ratio"`
			Redis      *RedisInfo `json:"redis,omitempty"`
			RedisError string     `json:"redis_error,omitempty"`
			Time       time.Time  `json:"time"`
		}{Stats: s, L1HitRatio: s.L1HitRatio(), L2HitRatio: s.L2HitRatio(), Time: time.Now().UTC()}
		if info, err := c.RedisInfo(r.Context()); err != nil {
			body.RedisError = err.Error()
		} else {
			body.Redis = &info
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(body)
	})
}
