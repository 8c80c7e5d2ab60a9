package rcall

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"time"

	"github.com/redis/rueidis"
)

// Script is a Lua script run with EVALSHA, falling back to EVAL when the server does not
// have it (NOSCRIPT): rueidis.Lua does the same, but builds commands that cannot be pinned.
type Script struct {
	src string
	sha string
}

// NewScript returns the script src.
func NewScript(src string) *Script {
	sum := sha1.Sum([]byte(src))
	return &Script{src: src, sha: hex.EncodeToString(sum[:])}
}

// Exec runs s with keys and args: one deadline and one breaker decision for both attempts.
func (c *Caller) Exec(ctx context.Context, s *Script, keys, args []string) rueidis.RedisResult {
	b, probe, err := c.start(ctx, 0)
	if err != nil {
		return rueidis.NewErrorResult(err)
	}
	var start time.Time
	if c.o.Observe != nil {
		start = time.Now()
	}
	cmd := c.client.B()
	res := c.client.Do(b.ctx, cmd.Evalsha().Sha1(s.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build().Pin())
	if re, ok := rueidis.IsRedisErr(res.Error()); ok && re.IsNoScript() {
		res = c.client.Do(b.ctx, cmd.Eval().Script(s.src).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build().Pin())
	}
	res, _ = c.finish(ctx, &b, probe, res)
	if c.o.Observe != nil {
		c.observe("EVALSHA", start, res.Error())
	}
	return res
}
