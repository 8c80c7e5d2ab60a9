package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/synspirit/tiercache/internal/rcall"
)

// Errors returned by the bus; match them with errors.Is.
var (
	// ErrClosed is returned by Publish once Close has been called, including to calls that
	// were waiting for their batch when Close was called.
	ErrClosed = errors.New("bus: closed")
	// ErrMalformed is returned by Decode for payloads that are not valid bus messages.
	ErrMalformed = errors.New("bus: malformed message")
	// ErrTooLarge is returned by Publish for a key or group name that cannot fit in one batch.
	ErrTooLarge = errors.New("bus: key or group too large")
	// ErrUnavailable is returned by Publish when Redis cannot be reached (a timeout, a
	// refused connection, an open circuit breaker). On a tiered.Cache's client (Redis()) it
	// also matches tiered.ErrUnavailable.
	ErrUnavailable = errors.New("bus: redis unavailable")
)

// Defaults of Options.
const (
	// DefaultPublishTimeout is the default of Options.PublishTimeout.
	DefaultPublishTimeout = 100 * time.Millisecond
	// DefaultSubscribeTimeout is the default of Options.SubscribeTimeout.
	DefaultSubscribeTimeout = 5 * time.Second
)

// Batch limits: Publish merges messages into one PUBLISH up to these limits, and sends several
// beyond them.
const (
	// MaxBatchKeys is the most keys one published message carries.
	MaxBatchKeys = 512
	// MaxBatchBytes bounds the keys and groups of one published message; a single key or group
	// longer than this is refused with ErrTooLarge.
	MaxBatchBytes = 64 << 10
)

// Message is one invalidation notice.
type Message struct {
	Origin   string   // sender instance id (set by Publish)
	Seq      uint64   // per-origin sequence number of the published batch (set by Publish)
	Keys     []string // full Redis keys to invalidate
	Groups   []string // group names cleared
	FlushAll bool     // drop everything
}

func (m Message) empty() bool { return len(m.Keys) == 0 && len(m.Groups) == 0 && !m.FlushAll }

// Options configures a Bus. The zero value of every field but Channel is usable.
type Options struct {
	// Channel is the pub/sub channel shared by every instance of the service; required.
	Channel string
	// InstanceID identifies this instance in the messages it sends, so that it can ignore
	// them when they come back. Default: 16 random hex characters. At most MaxOriginLen bytes.
	InstanceID string
	// Logger receives subscription events and errors. Default: zap.NewNop().
	Logger *zap.Logger
	// OnMessage is called for every valid message from another instance (this instance's own
	// messages are ignored). It runs on the bus's receive goroutine (the reader of its dedicated
	// connection), one call at a time, and must be fast: while it runs no further message is
	// read.
	OnMessage func(Message)
	// OnReset is called every time the subscription is established after the first time,
	// whatever the cause (connection killed, Redis restarted, resubscribe after an error):
	// messages may have been lost, so the receiver should drop everything it cached. It runs on
	// the same goroutine as OnMessage, before any message of the new subscription, and must not
	// block.
	OnReset func()
	// OnLost is called every time the subscription is lost after it was up (and again after
	// each failed attempt to make it again), on the bus's receive goroutine, before the bus
	// retries: until the next OnReset, messages are being missed. It must not block.
	OnLost func()
	// PublishTimeout is the deadline of each PUBLISH command. Default: DefaultPublishTimeout.
	PublishTimeout time.Duration
	// SubscribeTimeout bounds how long New waits for the first subscription when ctx has no
	// earlier deadline, and each later SUBSCRIBE attempt. Default: DefaultSubscribeTimeout.
	SubscribeTimeout time.Duration

	// Background makes New return at once, without waiting for the subscription, which is
	// then made (and retried) in the background; Ready tells when it is up. For a Redis that
	// may not answer yet.
	Background bool

	// RawChannels are further channels to subscribe to on the bus's connection, with plain
	// SUBSCRIBE even on a cluster (e.g. keyspace notifications, which are per node). Their
	// messages are not decoded: OnRaw gets them as they are, on the receive goroutine, in
	// order with OnMessage and OnReset. They share the bus's reset signal: OnReset fires once
	// they and the bus channel are subscribed again.
	RawChannels []string
	OnRaw       func(channel, message string)
}

// Stats are cumulative counters of a Bus.
type Stats struct {
	Published     uint64 `json:"published"`      // Publish calls whose message reached Redis
	PublishErrors uint64 `json:"publish_errors"` // Publish calls that returned an error
	Batches       uint64 `json:"batches"`        // PUBLISH commands that succeeded (coalesced Publish calls)
	BatchErrors   uint64 `json:"batch_errors"`   // PUBLISH commands that failed
	Received      uint64 `json:"received"`       // valid messages from other instances handed to OnMessage
	Ignored       uint64 `json:"ignored"`        // this instance's own messages, dropped
	Malformed     uint64 `json:"malformed"`      // payloads on the channel that Decode rejected, dropped
	Subscriptions uint64 `json:"subscriptions"`  // subscription confirmations, the first one included
	Resets        uint64 `json:"resets"`         // subscriptions after the first one (OnReset calls)
	Losses        uint64 `json:"losses"`         // subscriptions lost, or attempts to make one again failed (OnLost calls)
	Raw           uint64 `json:"raw"`            // messages on RawChannels handed to OnRaw
}

// Bus publishes invalidation messages to, and receives them from, the other instances of a
// service over one Redis pub/sub channel.
type Bus struct {
	client  rueidis.Client
	caller  *rcall.Caller // publishes and subscriptions
	opts    Options
	log     *zap.Logger
	sharded bool // cluster: SSUBSCRIBE/SPUBLISH

	ctx       context.Context // cancelled by Close; stops both goroutines
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the receive and send goroutines
	closeOnce sync.Once

	ready        chan struct{} // closed on the first subscription confirmation
	unsubscribed chan struct{} // cap 1: the server ended the subscription (sunsubscribe)

	sendMu sync.Mutex // protects queue and closed
	queue  []*batch   // waiting to be published, oldest first; only the last accepts merges
	closed bool
	wake   chan struct{} // cap 1: tells the sender the queue is not empty
	seq    atomic.Uint64

	stats counters
}

type counters struct {
	published, publishErrors, batches, batchErrors atomic.Uint64
	received, ignored, malformed                   atomic.Uint64
	subscriptions, resets, raw, losses             atomic.Uint64
}

// New starts a bus on client and returns once its subscription to opts.Channel is confirmed,
// or with an error when ctx ends or opts.SubscribeTimeout passes first (with
// opts.Background, at once). The subscription holds
// one dedicated connection of client (from its blocking pool) for the life of the bus. When client is a
// cluster client the bus uses sharded pub/sub (SSUBSCRIBE/SPUBLISH). Close the bus before the
// client; the bus never closes the client.
func New(ctx context.Context, client rueidis.Client, opts Options) (*Bus, error) {
	if client == nil {
		return nil, errors.New("bus: nil client")
	}
	if opts.Channel == "" {
		return nil, errors.New("bus: Options.Channel is required")
	}
	if opts.InstanceID == "" {
		var id [8]byte
		_, _ = rand.Read(id[:]) // never fails (crypto/rand contract since Go 1.24)
		opts.InstanceID = hex.EncodeToString(id[:])
	}
	if len(opts.InstanceID) > MaxOriginLen {
		return nil, fmt.Errorf("bus: Options.InstanceID longer than %d bytes", MaxOriginLen)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = DefaultPublishTimeout
	}
	if opts.SubscribeTimeout <= 0 {
		opts.SubscribeTimeout = DefaultSubscribeTimeout
	}
	caller := rcall.CallerOf(client) // a cache's client: its breaker and lifetime
	callOpts := rcall.Options{Timeout: opts.PublishTimeout, Unavailable: ErrUnavailable, Closed: ErrClosed, TimerDeadline: true}
	if caller != nil {
		caller = caller.With(callOpts)
	} else {
		caller = rcall.New(client, callOpts)
	}
	b := &Bus{
		client:       client,
		caller:       caller,
		opts:         opts,
		sharded:      client.Mode() == rueidis.ClientModeCluster,
		ready:        make(chan struct{}),
		unsubscribed: make(chan struct{}, 1),
		wake:         make(chan struct{}, 1),
	}
	b.log = opts.Logger.With(zap.String("channel", opts.Channel), zap.String("instance", opts.InstanceID))
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.wg.Add(2)
	go b.receiveLoop()
	go b.sendLoop()

	if opts.Background {
		return b, nil
	}
	wait, cancel := context.WithTimeout(ctx, opts.SubscribeTimeout)
	defer cancel()
	select {
	case <-b.ready:
		return b, nil
	case <-wait.Done():
		_ = b.Close()
		return nil, fmt.Errorf("bus: waiting for the subscription to %q: %w", opts.Channel, context.Cause(wait))
	}
}

// Ready is closed once the bus has subscribed for the first time: at once after New, unless
// Options.Background.
func (b *Bus) Ready() <-chan struct{} { return b.ready }

// InstanceID is the Origin this bus puts in the messages it publishes.
func (b *Bus) InstanceID() string { return b.opts.InstanceID }

// Stats returns a snapshot of the counters.
func (b *Bus) Stats() Stats {
	s := &b.stats
	return Stats{
		Published:     s.published.Load(),
		PublishErrors: s.publishErrors.Load(),
		Batches:       s.batches.Load(),
		BatchErrors:   s.batchErrors.Load(),
		Received:      s.received.Load(),
		Ignored:       s.ignored.Load(),
		Malformed:     s.malformed.Load(),
		Subscriptions: s.subscriptions.Load(),
		Resets:        s.resets.Load(),
		Losses:        s.losses.Load(),
		Raw:           s.raw.Load(),
	}
}

// Close stops the bus: waiting and later Publish calls return an error wrapping ErrClosed, the
// subscription loop ends, and Close returns once both goroutines of the bus have exited. It is
// safe to call more than once and from several goroutines. It does not close the client.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() {
		b.sendMu.Lock()
		b.closed = true
		b.sendMu.Unlock()
		b.cancel()
	})
	b.wg.Wait()
	return nil
}
