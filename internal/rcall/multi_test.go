package rcall_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/rcall"
	"github.com/synspirit/tiercache/internal/redistest"
)

// A pinned command is never recycled by rueidis: after the call it is still whole.
func TestCommandsArePinned(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	client := newClient(t, s)
	caller := rcall.New(client, options(nil))
	ctx := context.Background()

	// The control: rueidis recycles a command it was given unpinned.
	unpinned := client.B().Get().Key("k").Build()
	require.True(t, rueidis.IsRedisNil(client.Do(ctx, unpinned).Error()))
	require.NotEqual(t, []string{"GET", "k"}, unpinned.Commands(), "rueidis no longer recycles commands: this test shows nothing")

	cmd := client.B().Get().Key("k").Build()
	require.True(t, rueidis.IsRedisNil(caller.Do(ctx, cmd).Error()))
	assert.Equal(t, []string{"GET", "k"}, cmd.Commands())

	cmd = client.B().Set().Key("k").Value("v").Build()
	require.NoError(t, caller.DoMoving(ctx, cmd, 1).Error())
	assert.Equal(t, []string{"SET", "k", "v"}, cmd.Commands())

	cmds := []rueidis.Completed{client.B().Get().Key("a").Build(), client.B().Get().Key("b").Build()}
	for _, r := range caller.DoMulti(ctx, cmds...) {
		require.True(t, rueidis.IsRedisNil(r.Error()))
	}
	assert.Equal(t, []string{"GET", "a"}, cmds[0].Commands())
	assert.Equal(t, []string{"GET", "b"}, cmds[1].Commands())
}

func TestDoMultiClassifiesEachResult(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.WithArgs("--maxmemory-policy", "noeviction"))
	s.Do("RPUSH", "list", "a")
	s.Do("SET", "str", "v")
	s.Do("CONFIG", "SET", "maxmemory", "1")
	b := stayOpen()
	live := rcall.New(newClient(t, s), options(b))
	dead := rcall.New(deadClient(t), options(b))
	ctx := context.Background()

	require.Empty(t, live.DoMulti(ctx))

	requireUnavailable(t, get(dead, "k")) // one failure of two
	res := live.DoMulti(ctx,
		live.B().Get().Key("str").Build(),
		live.B().Get().Key("list").Build(), // WRONGTYPE (INCR would be OOM)
		live.B().Get().Key("missing").Build(),
		live.B().Set().Key("new").Value("v").Build(),
	)
	require.Len(t, res, 4)
	assert.Equal(t, "v", mustString(t, res[0]))
	requireReply(t, res[1].Error(), "WRONGTYPE")
	assert.False(t, rcall.IsUnavailable(res[1].Error()))
	assert.NoError(t, res[1].NonRedisError(), "an error reply is returned as it is, as Do returns it")
	assert.True(t, rueidis.IsRedisNil(res[2].Error()))
	requireUnavailable(t, res[3].Error())
	requireReply(t, res[3].Error(), "OOM")
	requireUnavailable(t, get(dead, "k"))
	assert.Equal(t, rcall.Closed, b.State(), "Redis answered: the run of failures was reset")
	requireUnavailable(t, get(dead, "k"))
	assert.Equal(t, rcall.Open, b.State())
}

func TestDoMultiIsOneBreakerDecision(t *testing.T) {
	t.Parallel()
	b := stayOpen()
	cnt := &counting{Client: deadClient(t)}
	caller := rcall.New(cnt, options(b))
	ctx := context.Background()
	three := func() []rueidis.Completed {
		return []rueidis.Completed{caller.B().Get().Key("a").Build(), caller.B().Get().Key("b").Build(), caller.B().Get().Key("c").Build()}
	}
	for _, r := range caller.DoMulti(ctx, three()...) {
		requireUnavailable(t, r.Error())
	}
	assert.Equal(t, rcall.Closed, b.State(), "three failed commands, one failure")
	for _, r := range caller.DoMultiMoving(ctx, 3, three()...) {
		requireUnavailable(t, r.Error())
	}
	assert.Equal(t, rcall.Open, b.State())
	sent := cnt.calls()
	res := caller.DoMulti(ctx, three()...)
	require.Len(t, res, 3)
	for _, r := range res {
		requireUnavailable(t, r.Error())
		require.ErrorContains(t, r.Error(), "circuit breaker open")
	}
	assert.Equal(t, sent, cnt.calls())

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	for _, r := range caller.DoMulti(cctx, three()...) {
		require.ErrorIs(t, r.Error(), context.Canceled)
	}
}

func TestDoMultiTimeoutIsOneFailure(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	b := stayOpen()
	o := options(b)
	o.Timeout = 50 * time.Millisecond
	caller := rcall.New(newClient(t, s), o)
	require.True(t, rueidis.IsRedisNil(get(caller, "k")))
	waitOver := pause(t, s, 500)
	res := caller.DoMulti(context.Background(), caller.B().Get().Key("a").Build(), caller.B().Get().Key("b").Build())
	for _, r := range res {
		requireUnavailable(t, r.Error())
		assert.True(t, timeoutErr(r.Error()), "%v", r.Error())
		assert.NotErrorIs(t, r.Error(), context.DeadlineExceeded)
	}
	assert.Equal(t, rcall.Closed, b.State())
	waitOver()
}

func TestMGetAndDelStandalone(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	cnt := &counting{Client: newClient(t, s)}
	caller := rcall.New(cnt, options(nil))
	ctx := context.Background()

	vals, err := caller.MGet(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, vals)
	require.NoError(t, caller.Del(ctx, nil))
	require.Zero(t, cnt.calls(), "no keys, no call")

	keys := []string{"a", "missing", "b", "{t}c", "a"}
	s.Do("SET", "a", "1")
	s.Do("SET", "b", "2")
	s.Do("SET", "{t}c", "3")
	vals, err = caller.MGetMoving(ctx, keys, 10)
	require.NoError(t, err)
	requireValues(t, vals, "1", "", "2", "3", "1")
	assert.Equal(t, int64(1), cnt.multi.Load(), "one MGET")

	require.NoError(t, caller.Del(ctx, keys))
	assert.Equal(t, int64(0), mustInt(t, s.Do("DBSIZE")))

	caller = rcall.New(deadClient(t), options(nil))
	_, err = caller.MGet(ctx, keys)
	requireUnavailable(t, err)
	requireUnavailable(t, caller.Del(ctx, keys))
}

// requireValues checks MGET values: "" stands for a nil message.
func requireValues(t *testing.T, vals []rueidis.RedisMessage, want ...string) {
	t.Helper()
	require.Len(t, vals, len(want))
	for i, w := range want {
		if w == "" {
			require.True(t, vals[i].IsNil(), "value %d is not nil", i)
			continue
		}
		v, err := vals[i].ToString()
		require.NoError(t, err, "value %d", i)
		require.Equal(t, w, v, "value %d", i)
	}
}

func mustInt(t *testing.T, r rueidis.RedisResult) int64 {
	t.Helper()
	n, err := r.AsInt64()
	require.NoError(t, err)
	return n
}

func TestSlotKnownVectors(t *testing.T) {
	t.Parallel()
	assert.Equal(t, uint16(0x31C3), rcall.Slot("123456789"), "CRC16/XMODEM check value, under 16384 already")
	assert.Equal(t, uint16(11058), rcall.Slot("somekey"))
	assert.Equal(t, uint16(0), rcall.Slot(""))
	tag := rcall.Slot("hash_tag")
	assert.Equal(t, tag, rcall.Slot("foo{hash_tag}"))
	assert.Equal(t, tag, rcall.Slot("{hash_tag}bar"))
	assert.Equal(t, rcall.Slot("{user1000}.following"), rcall.Slot("{user1000}.followers"))
	assert.Equal(t, rcall.Slot("user1000"), rcall.Slot("{user1000}.following"))
	assert.Equal(t, rcall.Slot("bar"), rcall.Slot("foo{bar}{zap}"), "the first tag")
	assert.Equal(t, rcall.Slot("{bar"), rcall.Slot("foo{{bar}}zap"), "up to the first '}' after the first '{'")
	// An empty tag, or none, hashes the whole key.
	assert.NotEqual(t, rcall.Slot("x"), rcall.Slot("{}x"))
	assert.NotEqual(t, rcall.Slot(""), rcall.Slot("{}x"))
	assert.NotEqual(t, rcall.Slot("bar"), rcall.Slot("foo{}{bar}"))
	for _, k := range []string{"{", "}", "{a", "a}b{", "\xff\x00{\xfe}"} {
		assert.Less(t, rcall.Slot(k), uint16(16384))
	}
}

// On a cluster: Slot is CLUSTER KEYSLOT, and MGet and Del work across slots (one command
// of several slots would be CROSSSLOT), in one pipeline, in the order of the keys.
func TestCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: cl.Addrs(), DisableCache: true, DisableRetry: true})
	require.NoError(t, err)
	t.Cleanup(client.Close)
	require.Equal(t, rueidis.ClientModeCluster, client.Mode())
	ctx := context.Background()

	t.Run("Slot is CLUSTER KEYSLOT", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		const alphabet = "ab{}xyz{}0}{ \xfe"
		keys := []string{"", "{}x", "{}", "}{", "{a}", "a{}b{c}", "123456789", "somekey"}
		for len(keys) < 400 {
			b := make([]byte, rng.IntN(14))
			for i := range b {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			}
			keys = append(keys, string(b))
		}
		admin := cl.Masters[0].Client()
		cmds := make(rueidis.Commands, len(keys))
		for i, k := range keys {
			cmds[i] = admin.B().Arbitrary("CLUSTER", "KEYSLOT").Args(k).Build()
		}
		for i, r := range admin.DoMulti(ctx, cmds...) {
			want, err := r.AsInt64()
			require.NoError(t, err)
			require.Equal(t, uint16(want), rcall.Slot(keys[i]), "key %q", keys[i])
		}
	})

	t.Run("MGet and Del", func(t *testing.T) {
		cnt := &counting{Client: client}
		caller := rcall.New(cnt, options(nil))
		var keys, want []string
		slots := map[uint16]bool{}
		for i := range 200 {
			k := "mk:" + strconv.Itoa(i)
			if i%10 == 0 {
				k = "{tag}:" + strconv.Itoa(i) // several keys of one slot
			}
			keys = append(keys, k)
			slots[rcall.Slot(k)] = true
			if i%3 == 0 {
				want = append(want, "")
				continue
			}
			want = append(want, "v"+strconv.Itoa(i))
			require.NoError(t, client.Do(ctx, client.B().Set().Key(k).Value("v"+strconv.Itoa(i)).Build()).Error())
		}
		keys, want = append(keys, keys[1]), append(want, want[1]) // a key twice
		require.Greater(t, len(slots), 100)

		vals, err := caller.MGet(ctx, keys)
		require.NoError(t, err)
		requireValues(t, vals, want...)
		assert.Equal(t, int64(1), cnt.multi.Load(), "one pipeline")

		require.NoError(t, caller.Del(ctx, keys))
		assert.Equal(t, int64(2), cnt.multi.Load())
		vals, err = caller.MGet(ctx, keys)
		require.NoError(t, err)
		for i, v := range vals {
			require.True(t, v.IsNil(), "key %q survived Del", keys[i])
		}
		for _, m := range cl.Masters {
			assert.Zero(t, mustInt(t, m.Do("DBSIZE")), "%s", m.Addr())
		}
	})

	t.Run("Script on every node", func(t *testing.T) {
		caller := rcall.New(client, options(nil))
		script := rcall.NewScript(`return redis.call("INCR", KEYS[1])`)
		seen := map[int]bool{}
		for i := 0; len(seen) < len(cl.Masters); i++ {
			k := "sk:" + strconv.Itoa(i)
			port := cl.MasterOfKey(k).Port()
			if seen[port] {
				continue
			}
			seen[port] = true
			for want := int64(1); want <= 2; want++ {
				n, err := caller.Exec(ctx, script, []string{k}, nil).AsInt64()
				require.NoError(t, err)
				require.Equal(t, want, n)
			}
		}
	})
}

func TestScriptFallsBackToEval(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	b := stayOpen()
	cnt := &counting{Client: newClient(t, s)}
	caller := rcall.New(cnt, options(b))
	ctx := context.Background()
	src := `return {KEYS[1], ARGV[1], ARGV[2]}`
	script := rcall.NewScript(src)
	sum := sha1.Sum([]byte(src))
	sha := hex.EncodeToString(sum[:])
	exists := func() int64 {
		a, err := s.Do("SCRIPT", "EXISTS", sha).AsIntSlice()
		require.NoError(t, err)
		return a[0]
	}
	run := func() {
		t.Helper()
		got, err := caller.Exec(ctx, script, []string{"k"}, []string{"a", "b"}).AsStrSlice()
		require.NoError(t, err)
		require.Equal(t, []string{"k", "a", "b"}, got)
	}

	require.Zero(t, exists())
	run()
	assert.Equal(t, int64(2), cnt.do.Load(), "EVALSHA, NOSCRIPT, then EVAL")
	assert.Equal(t, 1, commandCalls(t, s, "evalsha"))
	assert.Equal(t, 1, commandCalls(t, s, "eval"))
	assert.Equal(t, int64(1), exists(), "EVAL loaded it")

	run()
	assert.Equal(t, int64(3), cnt.do.Load(), "EVALSHA alone")
	assert.Equal(t, 2, commandCalls(t, s, "evalsha"))
	assert.Equal(t, 1, commandCalls(t, s, "eval"))

	s.Do("SCRIPT", "FLUSH")
	require.Zero(t, exists())
	run()
	assert.Equal(t, 3, commandCalls(t, s, "evalsha"))
	assert.Equal(t, 2, commandCalls(t, s, "eval"))
	assert.Equal(t, rcall.Closed, b.State())

	// A script's own error is an answer.
	err := caller.Exec(ctx, rcall.NewScript(`return redis.error_reply("MYERR no")`), nil, nil).Error()
	requireReply(t, err, "MYERR")
	assert.False(t, rcall.IsUnavailable(err))
	s.Do("RPUSH", "list", "a")
	err = caller.Exec(ctx, rcall.NewScript(`return redis.call("INCR", KEYS[1])`), []string{"list"}, nil).Error()
	require.Error(t, err)
	assert.False(t, rcall.IsUnavailable(err), "%v", err)
	assert.Contains(t, err.Error(), "WRONGTYPE")
}

// Exec is one breaker decision for both of its attempts.
func TestScriptIsOneBreakerDecision(t *testing.T) {
	t.Parallel()
	b := stayOpen()
	caller := rcall.New(deadClient(t), options(b))
	err := caller.Exec(context.Background(), rcall.NewScript("return 1"), nil, nil).Error()
	requireUnavailable(t, err)
	assert.Equal(t, rcall.Closed, b.State())
	requireUnavailable(t, caller.Exec(context.Background(), rcall.NewScript("return 1"), nil, nil).Error())
	assert.Equal(t, rcall.Open, b.State())
}

// commandCalls is calls= of cmdstat_<name> in INFO commandstats (0 if absent).
func commandCalls(t *testing.T, s *redistest.Server, name string) int {
	t.Helper()
	v, err := s.Do("INFO", "commandstats").ToAny()
	require.NoError(t, err)
	txt := strings.TrimPrefix(fmt.Sprint(v), "txt:")
	for _, line := range strings.Split(txt, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+name+":calls=")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
		require.NoError(t, err)
		return n
	}
	return 0
}

func TestClientWrapper(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	client := newClient(t, s)
	caller := rcall.New(client, options(nil))
	w := rcall.Wrap(client, caller)

	assert.Same(t, caller, rcall.CallerOf(w))
	assert.Nil(t, rcall.CallerOf(client))
	assert.Nil(t, rcall.CallerOf(nil))
	assert.Nil(t, rcall.CallerOf(&counting{Client: w}), "only a *Client carries a Caller")
	assert.Equal(t, client.Mode(), w.Mode())

	w.Close()
	ctx := context.Background()
	require.Equal(t, "PONG", mustString(t, w.Do(ctx, w.B().Ping().Build())), "Close left the client open")
	require.Equal(t, "PONG", mustString(t, client.Do(ctx, client.B().Ping().Build())))
	require.NoError(t, caller.Do(ctx, caller.B().Ping().Build()).Error())
}

// reusing is a client of another make that answers every pipeline in one slice of its own,
// reused by the next pipeline.
type reusing struct {
	rueidis.Client
	buf []rueidis.RedisResult
}

func (r *reusing) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	r.buf = append(r.buf[:0], r.Client.DoMulti(ctx, cmds...)...)
	return r.buf
}

// A pipeline's results are the caller's whatever client answered them: rueidis's own
// clients hand over the slice they return, and a client that reuses its slice gets copied
// (the results of one call were overwritten by the next).
func TestDoMultiResultsAreTheCallers(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	s.Do("SET", "a", "1")
	s.Do("SET", "b", "2")
	ctx := context.Background()
	for name, client := range map[string]rueidis.Client{"rueidis": newClient(t, s), "reusing": &reusing{Client: newClient(t, s)}} {
		caller := rcall.New(client, options(nil))
		first := caller.DoMulti(ctx, caller.B().Get().Key("a").Build())
		second := caller.DoMulti(ctx, caller.B().Get().Key("b").Build())
		assert.Equal(t, "1", mustString(t, first[0]), "%s: the first call's result", name)
		assert.Equal(t, "2", mustString(t, second[0]), "%s: the second call's result", name)
	}
}
