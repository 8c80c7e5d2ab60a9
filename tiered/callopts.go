package tiered

import (
	"fmt"
	"time"
)

// CallOption changes one call: TTL(d), Tags(tags...). Options are plain values: passing them allocates
// nothing.
type CallOption struct {
	ttl    time.Duration
	ttlSet bool
	tags   []string
}

// TTL stores the value of this Set or GetOrLoad for d instead of the group's TTL; d = 0
// means the group's TTL. A negative d, or one longer than MaxTTL, makes the call fail with
// an error wrapping ErrInvalidOptions.
func TTL(d time.Duration) CallOption { return CallOption{ttl: d, ttlSet: true} }

// callOpts are a call's options, resolved against its group.
type callOpts struct {
	ttl  time.Duration // > 0
	tags []string      // validated, without repeats
}

func (g *groupCore) callOptions(opts []CallOption) (callOpts, error) {
	co := callOpts{ttl: g.ttl}
	for _, o := range opts {
		if o.tags != nil {
			tags, err := checkTags(o.tags, len(co.tags))
			if err != nil {
				return co, err
			}
			co.tags = append(co.tags, tags...)
		}
		if o.ttlSet {
			switch {
			case o.ttl < 0:
				return co, fmt.Errorf("%w: TTL(%v) is negative", ErrInvalidOptions, o.ttl)
			case o.ttl > MaxTTL:
				return co, fmt.Errorf("%w: TTL(%v) is longer than MaxTTL (%v)", ErrInvalidOptions, o.ttl, MaxTTL)
			case o.ttl > 0:
				co.ttl = o.ttl
			default:
				co.ttl = g.ttl
			}
		}
	}
	return co, nil
}
