// Package rcall is the one way tiercache calls Redis. Every command of every package
// (tiered, counter, bus, image) goes through a Caller, which gives it:
//
//   - a deadline: Timeout, shared per window when the caller's context cannot be
//     cancelled (internal/deadline), and longer for calls that move a large value (see
//     TransferAllowance);
//   - Pin: rueidis recycles a command's buffer when Do returns, and under connection
//     resets the race detector caught a recycled buffer being rebuilt while a finished
//     connection's writer still read it (rueidis#702). A pinned command is never reused;
//   - the circuit breaker, shared by everything built on one cache;
//   - one classification of errors (Classify): an answer is an answer, the caller's own
//     cancellation or deadline is the context's error and never an outage, and the rest
//     is "redis unavailable".
package rcall

import (
	"context"
	"errors"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/synspirit/tiercache/internal/deadline"
	"github.com/synspirit/tiercache/internal/lifetime"
)

// Sentinels used when Options leave Unavailable or Closed nil.
var (
	ErrUnavailable = errors.New("redis unavailable")
	ErrClosed      = errors.New("closed")
)

// A call that moves more than TransferAllowance bytes (a write of a large value, or a read
// of a group that allows large values) gets Timeout plus the time to move the extra bytes
// at TransferRate: a slow transfer of a large value is not an outage. Values up to the
// allowance are expected to move well within Timeout.
const (
	TransferAllowance = 4 << 20
	TransferRate      = 16 << 20 // bytes per second, about what a 130 Mbit/s link moves
)

// Options configure a Caller.
type Options struct {
	// Timeout bounds each call; <= 0 means no deadline beyond the caller's.
	Timeout time.Duration
	// Breaker is shared by every Caller derived from this one; nil means none.
	Breaker *Breaker
	// Life is the owner's lifetime: once it is closed, calls fail with Closed at once.
	// nil means never closed.
	Life *lifetime.Lifetime
	// Unavailable and Closed are sentinels the errors of this Caller match, besides
	// ErrUnavailable and ErrClosed, which they always match, and the sentinels of the Caller
	// this one was derived from (With): an error of counters built on a cache matches the
	// counter package's sentinel and the cache's.
	Unavailable, Closed error
	// TimerDeadline applies Timeout with a timer that cancels the call instead of a context
	// deadline. Given a deadline on an idle connection, rueidis reads the reply
	// synchronously until that deadline, deaf to cancellation, and closes the connection
	// when it passes; without one the command is queued and abandoned on cancellation. For
	// the bus, whose Close must not wait out a publish.
	TimerDeadline bool
	// Observe, if set, is told of every call when it ends: the command's name ("GET",
	// "EVALSHA"; a pipeline's "BATCH <name>" when its commands share a name, else "BATCH"),
	// how long it took, and its error as the caller sees it (nil for an answer, a Redis nil
	// reply included). Calls refused before they are sent (closed, breaker open, a done
	// context) are not observed. It runs on the caller's goroutine: it must be quick and
	// safe for concurrent use. Callers derived with With keep it.
	Observe func(command string, d time.Duration, err error)
}

// Caller sends commands to one rueidis client. It is safe for concurrent use.
type Caller struct {
	client rueidis.Client
	o      Options
	bounds *deadline.Bounds
	// handsOver: client is one of rueidis's own, whose DoMulti hands the caller the slice it
	// returns (see handsOverResults).
	handsOver bool
	sentinels
}

// sentinels are what this Caller's errors match; shared, never changed once made.
type sentinels struct {
	unavailableS []error
	closedS      []error
}

// New returns a Caller over client.
func New(client rueidis.Client, o Options) *Caller {
	c := &Caller{client: client, o: o, bounds: newBounds(o), handsOver: handsOverResults(client)}
	c.sentinels = sentinels{unavailableS: appendNonNil(nil, o.Unavailable), closedS: appendNonNil(nil, o.Closed)}
	return c
}

// With returns a Caller on the same client, breaker and lifetime, with other settings: a
// Timeout of 0 keeps c's (a negative one means none); sentinels are added to c's.
func (c *Caller) With(o Options) *Caller {
	n := c.o
	if o.Timeout != 0 {
		n.Timeout = o.Timeout
	}
	n.TimerDeadline = n.TimerDeadline || o.TimerDeadline
	d := &Caller{client: c.client, o: n, bounds: newBounds(n), handsOver: c.handsOver}
	d.sentinels = sentinels{
		unavailableS: appendNonNil(append([]error(nil), c.unavailableS...), o.Unavailable),
		closedS:      appendNonNil(append([]error(nil), c.closedS...), o.Closed),
	}
	return d
}

// newBounds are o's deadlines: windows that end with its lifetime, which loads run under.
func newBounds(o Options) *deadline.Bounds {
	if o.Life == nil {
		return deadline.New(o.Timeout)
	}
	return deadline.NewWithin(o.Timeout, o.Life.Context())
}

func appendNonNil(s []error, e error) []error {
	if e != nil {
		s = append(s, e)
	}
	return s
}

func matches(sentinels []error, target error) bool {
	for _, s := range sentinels {
		if errors.Is(s, target) {
			return true
		}
	}
	return false
}

// Client is the rueidis client, for building commands (Client().B()) and for its mode.
func (c *Caller) Client() rueidis.Client { return c.client }

// B is the client's command builder.
func (c *Caller) B() rueidis.Builder { return c.client.B() }

// Breaker is the shared breaker, or nil.
func (c *Caller) Breaker() *Breaker { return c.o.Breaker }

// Life is the owner's lifetime, or nil.
func (c *Caller) Life() *lifetime.Lifetime { return c.o.Life }

// Timeout is the per-call deadline (<= 0: none).
func (c *Caller) Timeout() time.Duration { return c.o.Timeout }

// Closed reports whether the owner's lifetime is over.
func (c *Caller) Closed() bool { return c.o.Life != nil && c.o.Life.Closed() }

// Do sends one command. Its result's error, if any, is classified (see Classify); a Redis
// nil reply and a plain Redis error reply are returned as they are.
func (c *Caller) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	return c.DoMoving(ctx, cmd, 0)
}

// DoMoving is Do for a command that moves about n bytes (a value written, or the largest
// value a read may return): past TransferAllowance it gets a longer deadline.
func (c *Caller) DoMoving(ctx context.Context, cmd rueidis.Completed, n int64) rueidis.RedisResult {
	res, _ := c.DoMovingSettled(ctx, cmd, n)
	return res
}

// DoMovingSettled is DoMoving that also tells whether the command's fate is settled when it
// returns: Redis answered it (a nil or error reply included), or it was never sent (the
// owner closed, the breaker open, the caller's context done before). Otherwise (its
// deadline passed, its connection broke) it may have been sent, and a write may still be
// applied later: rueidis leaves a pipelined command queued when its caller stops waiting.
func (c *Caller) DoMovingSettled(ctx context.Context, cmd rueidis.Completed, n int64) (rueidis.RedisResult, bool) {
	b, probe, err := c.start(ctx, n)
	if err != nil {
		return rueidis.NewErrorResult(err), true
	}
	if c.o.Observe == nil {
		return c.finish(ctx, &b, probe, c.client.Do(b.ctx, cmd.Pin()))
	}
	name, start := commandName(cmd), time.Now()
	res, settled := c.finish(ctx, &b, probe, c.client.Do(b.ctx, cmd.Pin()))
	c.observe(name, start, res.Error())
	return res, settled
}

// answered tells whether err, a command's result as rueidis returned it, is Redis's answer.
func answered(err error) bool {
	if _, ok := err.(*rueidis.RedisError); ok || err == nil { // as rueidis returns it: no unwrapping
		return true
	}
	var re *rueidis.RedisError
	return errors.As(err, &re)
}

// observe tells Options.Observe of a call that started at start and ended with err.
func (c *Caller) observe(name string, start time.Time, err error) {
	if rueidis.IsRedisNil(err) {
		err = nil
	}
	c.o.Observe(name, time.Since(start), err)
}

// commandName is cmd's name as Options.Observe reports it: its first word.
func commandName(cmd rueidis.Completed) string {
	if words := cmd.Commands(); len(words) > 0 {
		return words[0]
	}
	return ""
}

// batchName is a pipeline's name as Options.Observe reports it.
func batchName(cmds []rueidis.Completed) string {
	name := commandName(cmds[0])
	for _, cmd := range cmds[1:] {
		if commandName(cmd) != name {
			return "BATCH"
		}
	}
	return "BATCH " + name
}

// DoMulti sends commands in one pipeline under one deadline and one breaker decision.
func (c *Caller) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	return c.DoMultiMoving(ctx, 0, cmds...)
}

// DoMultiMoving is DoMulti for commands that move about n bytes in all.
func (c *Caller) DoMultiMoving(ctx context.Context, n int64, cmds ...rueidis.Completed) []rueidis.RedisResult {
	res, _ := c.DoMultiMovingSettled(ctx, n, cmds...)
	return res
}

// DoMultiMovingSettled is DoMultiMoving that also tells whether the fate of every command
// is settled when it returns (see DoMovingSettled).
func (c *Caller) DoMultiMovingSettled(ctx context.Context, n int64, cmds ...rueidis.Completed) (_ []rueidis.RedisResult, settled bool) {
	if len(cmds) == 0 {
		return []rueidis.RedisResult{}, true
	}
	if err := c.refuse(ctx); err != nil {
		return failAll(len(cmds), err), true
	}
	ok, probe := c.o.Breaker.allow()
	if !ok {
		return failAll(len(cmds), c.unavailable(errBreakerOpen)), true
	}
	for i := range cmds {
		cmds[i] = cmds[i].Pin()
	}
	var (
		name  string
		start time.Time
	)
	if c.o.Observe != nil {
		name, start = batchName(cmds), time.Now()
	}
	b := c.deadline(ctx, n)
	res := c.client.DoMulti(b.ctx, cmds...)
	if !c.handsOver || len(res) != len(cmds) {
		// A client of another make may keep the slice, or answer fewer (the commands left
		// without an answer get a zero result): results of our own.
		out := make([]rueidis.RedisResult, len(cmds))
		copy(out, res)
		res = out
	}
	worst := success
	settled = true
	var first error // the first error of the pipeline's, for Observe
	for i, r := range res {
		// One Error call: each returns a new *RedisError for an error reply, which a second
		// call's would never equal.
		rerr := r.Error()
		settled = settled && answered(rerr)
		oc, err := c.classify(ctx, rerr, &b)
		worst = max(worst, oc)
		if err != rerr {
			res[i] = rueidis.NewErrorResult(err)
		}
		if first == nil && err != nil && !rueidis.IsRedisNil(err) {
			first = err
		}
	}
	b.cancel()
	c.account(worst, probe)
	if c.o.Observe != nil {
		c.observe(name, start, first)
	}
	return res, settled
}

// handsOverResults tells whether client is one of rueidis's own (single, cluster,
// sentinel), whose DoMulti hands the caller the slice it returns: rueidis never writes to it
// or recycles it afterwards (a call whose context ends first gets a new slice, and the
// pipeline recycles its own later). A wrapper or a test double may keep and reuse the slice
// it returns, and its results are copied.
func handsOverResults(client rueidis.Client) bool {
	t := reflect.TypeOf(client)
	if t == nil {
		return false
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.PkgPath() == "github.com/redis/rueidis"
}

// failAll is n results that are err.
func failAll(n int, err error) []rueidis.RedisResult {
	out := make([]rueidis.RedisResult, n)
	for i := range out {
		out[i] = rueidis.NewErrorResult(err)
	}
	return out
}

// DoOn sends one command on another client of the same Redis (a dedicated connection, one
// node of a cluster): pinned, within timeout (<= 0: the Caller's), classified, but outside
// the breaker. For the bus's subscriptions and the tracking listener's health checks,
// which retry by themselves.
func (c *Caller) DoOn(ctx context.Context, d interface {
	Do(context.Context, rueidis.Completed) rueidis.RedisResult
}, cmd rueidis.Completed, timeout time.Duration) rueidis.RedisResult {
	if err := c.refuse(ctx); err != nil {
		return rueidis.NewErrorResult(err)
	}
	if timeout <= 0 {
		timeout = c.o.Timeout
	}
	b := bound{ctx: ctx, parent: ctx, cancel: noop, d: timeout}
	if timeout > 0 {
		b.ctx, b.cancel = context.WithTimeout(ctx, timeout)
	}
	var (
		name  string
		start time.Time
	)
	if c.o.Observe != nil {
		name, start = commandName(cmd), time.Now()
	}
	res := d.Do(b.ctx, cmd.Pin())
	defer b.cancel()
	if err := res.Error(); err != nil {
		if _, cerr := c.classify(ctx, err, &b); cerr != err {
			res = rueidis.NewErrorResult(cerr)
		}
	}
	if c.o.Observe != nil {
		c.observe(name, start, res.Error())
	}
	return res
}

// start begins one call: refusals, the breaker, the deadline. Every call that starts must
// end with finish, which cancels its deadline and tells the breaker.
func (c *Caller) start(ctx context.Context, n int64) (b bound, probe bool, err error) {
	if err := c.refuse(ctx); err != nil {
		return bound{}, false, err
	}
	ok, probe := c.o.Breaker.allow()
	if !ok {
		return bound{}, false, c.unavailable(errBreakerOpen)
	}
	return c.deadline(ctx, n), probe, nil
}

// finish ends a call begun by start with its result: classification and the breaker's
// accounting. It also tells whether the command's fate is settled (see DoMovingSettled).
func (c *Caller) finish(ctx context.Context, b *bound, probe bool, res rueidis.RedisResult) (_ rueidis.RedisResult, settled bool) {
	err := res.Error()
	if err == nil || rueidis.IsRedisNil(err) {
		b.cancel()
		c.o.Breaker.success(probe)
		return res, true
	}
	oc, cerr := c.classify(ctx, err, b)
	b.cancel()
	c.account(oc, probe)
	if cerr != err {
		return rueidis.NewErrorResult(cerr), answered(err)
	}
	return res, answered(err)
}

// refuse fails a call before it is sent: the owner is closed, or the caller's context is
// already done.
func (c *Caller) refuse(ctx context.Context) error {
	if c.Closed() {
		return c.closedErr()
	}
	return ctx.Err()
}

// bound is one call's deadline.
type bound struct {
	ctx    context.Context // the call's
	parent context.Context // the caller's
	cancel context.CancelFunc
	timer  bool          // TimerDeadline: the call's own timeout is ctx's cause
	d      time.Duration // the call's own timeout, which its timeout error names
}

// timedOut, asked after the call and before cancel, tells whether the call's own deadline
// (not the caller's) has passed.
func (b *bound) timedOut() bool {
	if b.timer {
		return context.Cause(b.ctx) == errCallTimeout
	}
	return b.ctx != b.parent && expired(b.ctx) && !expired(b.parent)
}

// deadline bounds one call.
func (c *Caller) deadline(ctx context.Context, n int64) bound {
	timeout := c.o.Timeout
	if timeout <= 0 {
		return bound{ctx: ctx, parent: ctx, cancel: noop}
	}
	extra := time.Duration(0)
	if n > TransferAllowance {
		extra = time.Duration(float64(n-TransferAllowance) / TransferRate * float64(time.Second))
		if timeout > math.MaxInt64-extra { // saturate: never wrap to a deadline in the past
			timeout, extra = math.MaxInt64, 0
		}
	}
	b := bound{parent: ctx, d: timeout + extra}
	switch {
	case c.o.TimerDeadline:
		cctx, cancelCause := context.WithCancelCause(ctx)
		t := time.AfterFunc(timeout+extra, func() { cancelCause(errCallTimeout) })
		b.ctx, b.cancel, b.timer = cctx, func() { t.Stop(); cancelCause(nil) }, true
	case extra > 0:
		b.ctx, b.cancel = context.WithTimeout(ctx, timeout+extra)
	default:
		b.ctx, b.cancel = c.bounds.Context(ctx)
	}
	return b
}

// expired reports whether ctx is done or its deadline has passed. A call on an idle
// connection is bounded by a socket deadline taken from its context's (rueidis reads the
// reply synchronously) and can return context.DeadlineExceeded before the context's own
// timer has fired: Err alone would still be nil.
func expired(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// ctxErr is the error of an expired ctx (see expired).
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return context.DeadlineExceeded
}

var errCallTimeout = errors.New("rcall: call timeout")

func noop() {}

// outcome is what a call says about Redis, for the breaker; ordered by severity.
type outcome int

const (
	success outcome = iota // Redis answered
	abandon                // says nothing: the caller gave up, or the owner closed
	failure                // Redis did not answer, or cannot serve
)

func (c *Caller) account(oc outcome, probe bool) {
	switch oc {
	case success:
		c.o.Breaker.success(probe)
	case abandon:
		c.o.Breaker.abandon(probe)
	default:
		c.o.Breaker.failure(probe)
	}
}

// Classify tells what err, the error of a call made under ctx, means, in the terms every
// package of tiercache reports:
//
//   - a Redis nil reply and a plain Redis error reply (WRONGTYPE, NOPERM, a script's own
//     error) are answers: returned as they are;
//   - LOADING, BUSY, MASTERDOWN and CLUSTERDOWN mean a server that cannot serve anything
//     now: unavailable, and a failure for the breaker;
//   - OOM, READONLY, NOREPLICAS and TRYAGAIN refuse this command (a write, a multi-key
//     command during a resharding) while others still work: unavailable, but not a failure
//     for the breaker;
//   - once the caller's ctx is done, its error (context.Canceled or DeadlineExceeded) is
//     returned, never "unavailable", and the breaker is not told;
//   - after the owner closed: Closed;
//   - anything else (a refused or broken connection, the call's own deadline) is
//     unavailable, and a failure for the breaker. The call's own deadline is reported as
//     "no answer within <Timeout>", which does not match context.DeadlineExceeded: that
//     match is kept for the caller's own deadline.
func (c *Caller) Classify(ctx context.Context, err error) error {
	_, e := c.classify(ctx, err, &bound{ctx: ctx, parent: ctx})
	return e
}

func (c *Caller) classify(ctx context.Context, err error, b *bound) (outcome, error) {
	if err == nil || rueidis.IsRedisNil(err) {
		return success, err
	}
	var re *rueidis.RedisError
	if errors.As(err, &re) {
		switch replyClass(re.Error()) {
		case replyDown:
			return failure, c.unavailable(err)
		case replyRefused:
			return success, c.unavailable(err)
		}
		return success, err
	}
	if ours := b.timedOut(); !ours && expired(ctx) {
		return abandon, ctxErr(ctx)
	} else if ours && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		err = timeoutError{b.d}
	}
	if c.Closed() {
		return abandon, c.closedErr()
	}
	if errors.Is(err, ErrUnavailable) {
		return failure, err // classified already (a nested call)
	}
	return failure, c.unavailable(err)
}

type replyKind int

const (
	replyAnswer  replyKind = iota
	replyDown              // the server cannot serve anything now
	replyRefused           // this command is refused, others may work
)

func replyClass(msg string) replyKind {
	code, _, _ := strings.Cut(msg, " ")
	switch code {
	case "LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN":
		return replyDown
	case "OOM", "READONLY", "NOREPLICAS", "TRYAGAIN":
		return replyRefused
	}
	return replyAnswer
}

var errBreakerOpen = errors.New("circuit breaker open")

func (c *Caller) unavailable(cause error) error {
	return &unavailableError{sentinels: c.unavailableS, cause: cause}
}

func (c *Caller) closedErr() error { return &closedError{sentinels: c.closedS} }

// Unavailable wraps cause as an outage of this Caller (for failures found outside a call,
// e.g. a bus that is not subscribed).
func (c *Caller) Unavailable(cause error) error { return c.unavailable(cause) }

// unavailableError is a call that did not reach a Redis able to serve it. Its text leaves
// the package prefix to the caller's wrapping ("tiered: get k: redis unavailable: …").
type unavailableError struct {
	sentinels []error
	cause     error
}

func (e *unavailableError) Error() string { return "redis unavailable: " + e.cause.Error() }
func (e *unavailableError) Unwrap() error { return e.cause }
func (e *unavailableError) Is(target error) bool {
	return target == ErrUnavailable || matches(e.sentinels, target)
}

// closedError is a call after the owner closed.
type closedError struct{ sentinels []error }

func (e *closedError) Error() string { return "closed" }
func (e *closedError) Is(target error) bool {
	return target == ErrClosed || matches(e.sentinels, target)
}

// timeoutError is a call's own deadline passing: Redis did not answer in time.
type timeoutError struct{ d time.Duration }

func (e timeoutError) Error() string   { return "no answer within " + e.d.String() }
func (e timeoutError) Timeout() bool   { return true }
func (e timeoutError) Temporary() bool { return true }

// IsUnavailable reports whether err is a classified outage.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }
