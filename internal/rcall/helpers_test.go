package rcall_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/synspirit/tiercache/internal/rcall"
	"github.com/synspirit/tiercache/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newClient is a plain client of one server: no client-side cache, no retries (so that a
// reply reaches the Caller as the server sent it), one node, one connection. With several
// (rueidis's default), each call picks one at random, and one not dialled yet is dialled
// by the call: under CLIENT PAUSE its handshake waits out the pause, deaf to the call's
// cancellation, and the tests could not tell what a call waited on.
func newClient(t *testing.T, s *redistest.Server) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{s.Addr()},
		DisableCache:      true,
		DisableRetry:      true,
		ForceSingleClient: true,
		PipelineMultiplex: -1,
	})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// counting is the real client with a count of the calls that reach it: how the tests see
// that a call was refused without being sent.
type counting struct {
	rueidis.Client
	do, multi atomic.Int64
}

func (c *counting) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	c.do.Add(1)
	return c.Client.Do(ctx, cmd)
}

func (c *counting) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	c.multi.Add(1)
	return c.Client.DoMulti(ctx, cmds...)
}

func (c *counting) calls() int64 { return c.do.Load() + c.multi.Load() }

// raw is one plain RESP2 connection to a server, for commands that block their connection
// (DEBUG RELOAD, a busy script) or must not queue behind them.
type raw struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, s *redistest.Server) *raw {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &raw{t: t, conn: c, r: bufio.NewReader(c)}
}

// send writes one command without reading its reply.
func (r *raw) send(args ...string) {
	r.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_ = r.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := r.conn.Write([]byte(b.String()))
	require.NoError(r.t, err)
}

// read reads one reply (waiting at most 10 s): an error reply is returned as an error,
// anything else as text (an array's elements joined by newlines).
func (r *raw) read() (string, error) {
	_ = r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	return readReply(r.r)
}

// do is send then read.
func (r *raw) do(args ...string) (string, error) {
	r.send(args...)
	return r.read()
}

func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply line")
	}
	switch body := line[1:]; line[0] {
	case '+', ':':
		return body, nil
	case '-':
		return "", errors.New(body)
	case '$':
		n, _ := strconv.Atoi(body)
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, _ := strconv.Atoi(body)
		var parts []string
		for range max(n, 0) {
			p, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// infoField is one field of INFO section, read on a raw connection (INFO is served while
// the server loads or runs a busy script).
func (r *raw) infoField(section, name string) string {
	r.t.Helper()
	txt, err := r.do("INFO", section)
	require.NoError(r.t, err)
	for _, line := range strings.Split(txt, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// The sentinels of the Callers under test, besides rcall's own.
var (
	errTestUnavailable = errors.New("test: unavailable")
	errTestClosed      = errors.New("test: closed")
)

// options are the Options of most Callers under test: b may be nil.
func options(b *rcall.Breaker) rcall.Options {
	return rcall.Options{Timeout: 2 * time.Second, Breaker: b, Unavailable: errTestUnavailable, Closed: errTestClosed}
}

// stayOpen is a breaker that opens after two consecutive failures and stays open for the
// rest of the test.
func stayOpen() *rcall.Breaker {
	return rcall.NewBreaker(rcall.BreakerOptions{Threshold: 2, Cooldown: time.Hour})
}

// deadClient is a client of a server that has been stopped: every call is refused.
func deadClient(t *testing.T) rueidis.Client {
	t.Helper()
	s := redistest.Start(t)
	c := newClient(t, s)
	s.Stop()
	return c
}

// requireUnavailable checks that err is an outage of a Caller made with options.
func requireUnavailable(t *testing.T, err error, sentinels ...error) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, rcall.ErrUnavailable)
	require.True(t, rcall.IsUnavailable(err))
	require.ErrorIs(t, err, errTestUnavailable)
	for _, s := range sentinels {
		require.ErrorIs(t, err, s)
	}
	require.NotErrorIs(t, err, rcall.ErrClosed)
	require.NotErrorIs(t, err, errTestClosed)
}

// requireReply checks that err carries a Redis error reply whose code is code.
func requireReply(t *testing.T, err error, code string) *rueidis.RedisError {
	t.Helper()
	var re *rueidis.RedisError
	require.ErrorAs(t, err, &re)
	require.True(t, strings.HasPrefix(re.Error(), code+" "), "reply %q is not %s", re.Error(), code)
	return re
}

// get is GET key through caller, the error only.
func get(caller *rcall.Caller, key string) error {
	return caller.Do(context.Background(), caller.B().Get().Key(key).Build()).Error()
}

// pause runs CLIENT PAUSE ms ALL on a connection of its own and returns a function that
// waits until the pause is over (the admin client's PING is held until then).
func pause(t *testing.T, s *redistest.Server, ms int) (waitOver func()) {
	t.Helper()
	s.Do("PING") // the admin connection exists before the pause, and its handshake is done
	_, err := dialRaw(t, s).do("CLIENT", "PAUSE", strconv.Itoa(ms), "ALL")
	require.NoError(t, err)
	return func() { s.Do("PING") }
}

// timeoutErr reports whether err is, or wraps, an error that says it is a timeout.
func timeoutErr(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
