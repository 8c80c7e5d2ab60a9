package tiered

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
	"weak"

	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/synspirit/tiercache/bus"
)

// Tags: invalidate every value that depends on one thing, in every group, on every instance,
// in O(1).
//
// A tag has a version in Redis, <KeyPrefix>tiercache:gen:@<tag>: a random 64-bit number in
// base 36, like a group generation, and beside the generations, so that the tracking and the
// bus that report a Clear report an InvalidateTags too (no group name has '@'). A tagged value
// records in its envelope the version of each of its tags when it was written: for
// GetOrLoad, read before its loader ran; for AddTags, when the loader called it; for Set,
// when Set was called. InvalidateTags gives each tag a new version (one SET): from then on
// every value that recorded an older one is a miss, for every reader, on every instance,
// from L1 and from Redis. Nothing is scanned, listed or deleted, and no per-tag set grows:
// the old values expire with their TTL. A version key that is lost (deleted, evicted, a
// failover) reads as no version, and the next tagged write makes a new random one: no value
// recorded it, so nothing invalidated comes back.
//
// Reads compare without a round trip: each instance keeps the versions it has read (a
// tagState per tag), and forgets one when tracking or the bus reports a change to its key,
// or all of them when it may have missed a report (when it flushes L1). A version it does
// not know is read with the value's other unknown tags in one MGET. An L1 entry of a tagged
// value holds the version objects it was checked against: a hit compares one pointer per
// tag. Tag states live while an L1 entry or the recent ring holds them (weak pointers): the
// table needs no bound of its own.
//
// A tag's version key lives tagKeyTTL from its creation or its last InvalidateTags; when it
// expires, its values are dropped as though it had been invalidated.

const (
	// MaxTagBytes is the longest tag.
	MaxTagBytes = 1024
	// MaxTagsPerValue is the most tags one value may carry.
	MaxTagsPerValue = 64
	// tagKeyTTL is how long a tag's version key lives after it is made.
	tagKeyTTL = 7 * 24 * 60 * 60 * 1000 // ms
	// tagRecent is how many recently read tag states stay alive without an L1 entry holding
	// them (for L2 reads of groups without L1, or values L1 did not keep).
	tagRecent = 1 << 14
)

// Tags attaches tags to the values this call stores: Set, GetOrLoad and GetOrLoadMany (every
// value the call loads, and cached misses). Cache.InvalidateTags of any of them drops the
// value everywhere. A tag is a non-empty string of at most MaxTagBytes, without control
// characters; a value carries at most MaxTagsPerValue. For GetOrLoad the tags' versions are
// read before the loader runs, so an InvalidateTags during the load invalidates its value.
func Tags(tags ...string) CallOption { return CallOption{tags: tags} }

// AddTags, called by a loader with the context it was given, tags what it returns (in a batch
// loader, every value of the call). The tags' versions are taken when AddTags is called: call
// it before reading what the tags stand for. If they cannot be read (Redis failing), the
// value is returned but not cached. Bad tags are logged and make the value uncached.
func AddTags(ctx context.Context, tags ...string) { addTags(ctx, "", tags) }

// AddTagsFor is AddTags for one key of a batch loader's call (GetOrLoadMany).
func AddTagsFor(ctx context.Context, key string, tags ...string) { addTags(ctx, key, tags) }

func addTags(ctx context.Context, key string, tags []string) {
	ctl, ok := ctx.Value(loadControlKey{}).(*loadControl)
	if !ok || ctl.c == nil || len(tags) == 0 {
		return
	}
	refs, err := ctl.c.tagRefs(ctx, tags, true)
	if err != nil {
		ctl.noCache.Store(true)
		ctl.c.log.Warn("loader tags not recorded: the value is not cached", zap.Strings("tags", tags), zap.Error(err))
		return
	}
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if key == "" {
		ctl.refs = append(ctl.refs, refs...)
		return
	}
	if ctl.keyRefs == nil {
		ctl.keyRefs = map[string][]tagRef{}
	}
	ctl.keyRefs[key] = append(ctl.keyRefs[key], refs...)
}

// InvalidateTags drops every value carrying one of tags, in every group, on every instance:
// from then on each is a miss, from L1 and from Redis (fail-safe included). One SET per tag,
// pipelined; nothing is scanned. Other instances hear of it from tracking and the bus, as of
// a Clear: within the invalidation delay of the README's consistency model.
func (c *Cache) InvalidateTags(ctx context.Context, tags ...string) error {
	if c.isClosed() {
		return ErrClosed
	}
	names, err := checkTags(tags, -1)
	if err != nil {
		return &opError{op: "invalidate", where: "tags", err: err}
	}
	if len(names) == 0 {
		return nil
	}
	b := c.caller.B()
	cmds := make(rueidis.Commands, len(names))
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = c.tags.keyPrefix + n
		cmds[i] = b.Set().Key(keys[i]).Value(newGen()).PxMilliseconds(tagKeyTTL).Build()
	}
	var errs []error
	for _, r := range c.caller.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range names { // whatever Redis said: a write may have landed
		c.tags.heard(n)
	}
	c.st.tagsInvalidated.Add(uint64(len(names)))
	if len(errs) > 0 {
		c.st.l2Errors.Add(1)
		return &opError{op: "invalidate", where: "tags", err: errors.Join(errs...)}
	}
	c.publish(ctx, bus.Message{Keys: keys})
	return nil
}

// checkTags validates tags and drops repeats; have is how many tags the value has already,
// -1 for no limit on their number (InvalidateTags).
func checkTags(tags []string, have int) ([]string, error) {
	if have >= 0 && len(tags)+have > MaxTagsPerValue {
		var seen int
		for i, t := range tags {
			if !containsBefore(tags, i, t) {
				seen++
			}
		}
		if seen+have > MaxTagsPerValue {
			return nil, fmt.Errorf("%w: %d tags (at most MaxTagsPerValue, %d)", ErrInvalidOptions, seen+have, MaxTagsPerValue)
		}
	}
	out := tags[:0:0]
	var seen map[string]bool // for many tags; containsBefore for a value's few
	if len(tags) > MaxTagsPerValue {
		seen = make(map[string]bool, len(tags))
	}
	for i, t := range tags {
		switch {
		case t == "":
			return nil, fmt.Errorf("%w: empty tag", ErrInvalidOptions)
		case len(t) > MaxTagBytes:
			return nil, fmt.Errorf("%w: tag of %d bytes (at most MaxTagBytes, %d)", ErrInvalidOptions, len(t), MaxTagBytes)
		case !utf8.ValidString(t) || hasControl(t):
			return nil, fmt.Errorf("%w: tag %q has control characters or is not UTF-8", ErrInvalidOptions, t)
		}
		switch {
		case seen != nil:
			if !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		case !containsBefore(tags, i, t):
			out = append(out, t)
		}
	}
	return out, nil
}

func containsBefore(s []string, i int, v string) bool {
	for _, x := range s[:i] {
		if x == v {
			return true
		}
	}
	return false
}

// hasControl reports whether s has a control character: C0, DEL or C1 (unicode.IsControl).
func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

// tagVersion is what an instance knows of a tag's version. Immutable; its pointer identity
// stands for one reading, so that a reading that raced an invalidation is not kept
// (compare-and-swap), and an L1 entry checked against it is served only while it is current.
type tagVersion struct {
	known bool   // false: a marker, the version must be read from Redis
	v     string // the version; "" when known and Redis has none
}

// tagState is an instance's view of one tag.
type tagState struct {
	key  string                     // <KeyPrefix>tiercache:gen:@<tag>
	cur  atomic.Pointer[tagVersion] // never nil
	last atomic.Pointer[tagVersion] // the last version read, kept across flushes for fail-safe; nil once a change is heard
}

// forget makes the state re-read its version; heard: because its key changed (fail-safe may
// no longer trust the last version either).
func (s *tagState) forget(heard bool) {
	if heard {
		s.last.Store(nil)
	}
	s.cur.Store(&tagVersion{})
}

// tagTable holds an instance's tag states by tag.
type tagTable struct {
	keyPrefix string // <KeyPrefix>tiercache:gen:@

	mu sync.Mutex // guards m
	m  map[string]weak.Pointer[tagState]

	recent [tagRecent]atomic.Pointer[tagState] // keeps recently read states alive
	next   atomic.Uint32
}

func newTagTable(keyPrefix string) *tagTable {
	return &tagTable{keyPrefix: genKeyPrefix(keyPrefix) + "@", m: map[string]weak.Pointer[tagState]{}}
}

// state returns the state of tag, making it if no one holds one.
func (t *tagTable) state(tag string) *tagState {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.m[tag].Value(); s != nil {
		return s
	}
	s := &tagState{key: t.keyPrefix + tag}
	s.cur.Store(&tagVersion{})
	wp := weak.Make(s)
	t.m[tag] = wp
	runtime.AddCleanup(s, func(tag string) { t.drop(tag, wp) }, tag)
	return s
}

// drop removes tag's entry once its state is gone, unless a new state has taken its place.
func (t *tagTable) drop(tag string, wp weak.Pointer[tagState]) {
	t.mu.Lock()
	if t.m[tag] == wp {
		delete(t.m, tag)
	}
	t.mu.Unlock()
}

// existing returns tag's state if someone holds it.
func (t *tagTable) existing(tag string) *tagState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[tag].Value()
}

// heard handles a change to tag's version key, whoever reported it.
func (t *tagTable) heard(tag string) {
	if s := t.existing(tag); s != nil {
		s.forget(true)
	}
}

// forgetAll makes every state re-read its version: a change may have gone unheard. One
// marker serves them all (see registry.forgetAllGens).
func (t *tagTable) forgetAll() {
	marker := &tagVersion{}
	t.mu.Lock()
	states := make([]*tagState, 0, len(t.m))
	for _, wp := range t.m {
		if s := wp.Value(); s != nil {
			states = append(states, s)
		}
	}
	t.mu.Unlock()
	for _, s := range states {
		s.cur.Store(marker)
	}
}

// keep puts s in the recent ring.
func (t *tagTable) keep(s *tagState) { t.recent[t.next.Add(1)%tagRecent].Store(s) }

// tagRef is one tag of a value: its state, and the version the value was checked against.
type tagRef struct {
	s *tagState
	v *tagVersion
}

// tagRefs returns the current versions of tags (validated, repeats dropped), reading from
// Redis those the instance does not know: with create (a write), a missing or garbled
// version is replaced by a new one; without (a read), it reads as "".
func (c *Cache) tagRefs(ctx context.Context, tags []string, create bool) ([]tagRef, error) {
	names, err := checkTags(tags, 0)
	if err != nil {
		return nil, err
	}
	refs := make([]tagRef, len(names))
	for i, n := range names {
		refs[i].s = c.tags.state(n)
	}
	return refs, c.resolveTags(ctx, refs, create)
}

// resolveTags fills in the version of each ref from what the instance knows, reading from
// Redis the unknown ones (one MGET, by slot, for reads; the generation script, per tag, for
// writes). A version read while L1 is live is kept, unless the tag changed meanwhile.
func (c *Cache) resolveTags(ctx context.Context, refs []tagRef, create bool) error {
	var unknown []int
	for i := range refs {
		v := refs[i].s.cur.Load()
		if v.known && (v.v != "" || !create) {
			refs[i].v = v
			continue
		}
		refs[i].v = v // the marker, until read
		unknown = append(unknown, i)
	}
	if len(unknown) == 0 {
		return nil
	}
	if create {
		for _, i := range unknown {
			reply, err := c.caller.Exec(ctx, genScript, []string{refs[i].s.key}, []string{newGen(), strconv.Itoa(tagKeyTTL)}).ToArray()
			if err != nil {
				return err
			}
			if len(reply) != 2 {
				return fmt.Errorf("version of tag key %s: unexpected reply of %d values", refs[i].s.key, len(reply))
			}
			v, err := reply[0].ToString()
			if err != nil {
				return fmt.Errorf("version of tag key %s: %w", refs[i].s.key, err)
			}
			c.keepTag(refs[i], &tagVersion{known: true, v: v})
			refs[i].v = refs[i].s.cur.Load()
			if refs[i].v.v != v { // lost to an invalidation: record what Redis said, once
				refs[i].v = &tagVersion{known: true, v: v}
			}
		}
		return nil
	}
	keys := make([]string, len(unknown))
	for j, i := range unknown {
		keys[j] = refs[i].s.key
	}
	vals, err := c.caller.MGet(ctx, keys)
	if err != nil {
		return err
	}
	for j, i := range unknown {
		v, err := vals[j].ToString()
		if err != nil || !isGen(v) {
			v = "" // missing or garbled: no value recorded it
		}
		read := &tagVersion{known: true, v: v}
		c.keepTag(refs[i], read)
		refs[i].v = read
		if cur := refs[i].s.cur.Load(); cur.known && cur.v == v {
			refs[i].v = cur
		}
	}
	return nil
}

// keepTag stores a version read for ref's tag, if no change was heard since ref's marker
// was taken and invalidations are being heard at all.
func (c *Cache) keepTag(ref tagRef, v *tagVersion) {
	if !c.l1.Live() {
		return
	}
	if ref.s.cur.CompareAndSwap(ref.v, v) {
		ref.s.last.Store(v)
		c.tags.keep(ref.s)
	}
}

// isGen tells whether v has the form of a generation (see genScript).
func isGen(v string) bool {
	if v == "" || len(v) > 13 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if ch := v[i]; !('0' <= ch && ch <= '9' || 'a' <= ch && ch <= 'z') {
			return false
		}
	}
	return true
}

// taggedValue is what L1 holds for a tagged value: the value, and the versions of its tags
// it was checked against.
type taggedValue struct {
	v    any
	refs []tagRef
}

// current tells whether every tag still has the version the value was checked against.
func (tv *taggedValue) current() bool {
	for _, r := range tv.refs {
		if r.s.cur.Load() != r.v {
			return false
		}
	}
	return true
}

// unheard tells whether no change to the value's tags has been heard since it was checked:
// fail-safe's test, which holds across flushes (a flush forgets versions without a change).
func (tv *taggedValue) unheard() bool {
	for _, r := range tv.refs {
		cur := r.s.cur.Load()
		if cur.known {
			if cur.v != r.v.v {
				return false
			}
			continue
		}
		if last := r.s.last.Load(); last == nil || last.v != r.v.v {
			return false
		}
	}
	return true
}

// withTags wraps v for L1 if it has tags.
func withTags(v any, refs []tagRef) any {
	if len(refs) == 0 {
		return v
	}
	return &taggedValue{v: v, refs: refs}
}

// fromL1 unwraps what L1 holds under hash h. A tagged value whose tags changed is dropped
// from L1 and reported absent. Small enough to inline: an untagged hit pays one type check.
func (g *groupCore) fromL1(h uint64, v any) (any, bool) {
	if tv, ok := v.(*taggedValue); ok {
		return g.taggedFromL1(h, tv)
	}
	return v, true
}

func (g *groupCore) taggedFromL1(h uint64, tv *taggedValue) (any, bool) {
	if tv.current() {
		return tv.v, true
	}
	g.c.l1.Invalidate(h)
	g.c.st.tagStale.Add(1)
	return nil, false
}

// staleFromL1 unwraps a fail-safe value: a tagged one only if no change to its tags has been
// heard.
func staleFromL1(v any) (any, bool) {
	tv, ok := v.(*taggedValue)
	if !ok {
		return v, true
	}
	if tv.unheard() {
		return tv.v, true
	}
	return nil, false
}

// The tag section of an envelope (flagTagged): a uvarint count, then per tag its name and
// version, each a uvarint length and bytes.

func appendTagSection(dst []byte, refs []tagRef, names []string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(refs)))
	for i, r := range refs {
		dst = binary.AppendUvarint(dst, uint64(len(names[i])))
		dst = append(dst, names[i]...)
		dst = binary.AppendUvarint(dst, uint64(len(r.v.v)))
		dst = append(dst, r.v.v...)
	}
	return dst
}

// splitTagSection returns the length of the tag section at the start of b.
func splitTagSection(b []byte) (int, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > MaxTagsPerValue {
		return 0, errors.New("bad tag count")
	}
	off := w
	for range 2 * n {
		l, w := binary.Uvarint(b[off:])
		if w <= 0 || l > uint64(len(b)-off-w) {
			return 0, errors.New("bad tag length")
		}
		off += w + int(l)
	}
	return off, nil
}

// eachTag calls f with the name and version of every tag of a section splitTagSection
// accepted.
func eachTag(sec []byte, f func(name, version []byte)) {
	n, off := binary.Uvarint(sec)
	for range n {
		l, w := binary.Uvarint(sec[off:])
		name := sec[off+w : off+w+int(l)]
		off += w + int(l)
		l, w = binary.Uvarint(sec[off:])
		f(name, sec[off+w:off+w+int(l)])
		off += w + int(l)
	}
}

// checkEnvelopeTags tells whether every tag of env still has the version env recorded,
// reading unknown versions from Redis, and returns the refs to keep in L1 with the value.
func (c *Cache) checkEnvelopeTags(ctx context.Context, env envelope) (refs []tagRef, ok bool, err error) {
	if env.tags == nil {
		return nil, true, nil
	}
	var recorded []string
	eachTag(env.tags, func(name, version []byte) {
		refs = append(refs, tagRef{s: c.tags.state(string(name))})
		recorded = append(recorded, string(version))
	})
	if err := c.resolveTags(ctx, refs, false); err != nil {
		return nil, false, err
	}
	for i, r := range refs {
		if r.v.v != recorded[i] {
			return nil, false, nil
		}
	}
	return refs, true, nil
}

// tagNames are the tags' names in refs' order (for the envelope).
func (c *Cache) tagNames(refs []tagRef) []string {
	names := make([]string, len(refs))
	for i, r := range refs {
		names[i] = r.s.key[len(c.tags.keyPrefix):]
	}
	return names
}

// mergeRefs joins tag refs, dropping repeats of a tag (the first stays).
func mergeRefs(a, b []tagRef) []tagRef {
	if len(b) == 0 {
		return a
	}
	out := slices.Clip(a)
	for _, r := range b {
		dup := false
		for _, x := range out {
			if x.s == r.s {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, r)
		}
	}
	return out
}

// prefetchTags reads in one MGET the versions, unknown to this instance, of the tags of the
// values in raws (a batch read), so that checking each value costs no round trip of its own.
// A failure is left to the checks, which read again.
func (c *Cache) prefetchTags(ctx context.Context, raws [][]byte) {
	var refs []tagRef
	seen := map[*tagState]bool{}
	for _, raw := range raws {
		env, err := decodeEnvelope(raw)
		if err != nil || env.tags == nil {
			continue
		}
		eachTag(env.tags, func(name, _ []byte) {
			s := c.tags.state(string(name))
			if !seen[s] && !s.cur.Load().known {
				seen[s] = true
				refs = append(refs, tagRef{s: s})
			}
		})
	}
	if len(refs) > 0 {
		_ = c.resolveTags(ctx, refs, false)
	}
}
