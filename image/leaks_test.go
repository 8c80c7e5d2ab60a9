package image

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// What the proxy tells clients and what it tells its logger: a client gets a short text per
// status, never a resolver or origin address, a dial error, an option name or a configured
// limit; the operator finds the detail in the log, at Info for the guard's refusals (naming
// the option that would allow the request) and at Debug for origin failures.

// observedLogger returns a logger recording every entry, and the entries.
func observedLogger() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(core), logs
}

// entryText is an entry's message and fields on one line, fields sorted by name.
func entryText(e observer.LoggedEntry) string {
	fields := e.ContextMap()
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(e.Message)
	for _, name := range names {
		fmt.Fprintf(&b, " %s=%v", name, fields[name])
	}
	return b.String()
}

// assertLogged asserts that one entry at level has the field url=u and contains each of
// want, and returns its text.
func assertLogged(t *testing.T, logs *observer.ObservedLogs, level zapcore.Level, u string, want ...string) string {
	t.Helper()
	var seen []string
	for _, e := range logs.All() {
		text := entryText(e)
		seen = append(seen, e.Level.String()+": "+text)
		if e.Level != level || e.ContextMap()["url"] != u {
			continue
		}
		found := true
		for _, w := range want {
			found = found && strings.Contains(text, w)
		}
		if found {
			return text
		}
	}
	t.Errorf("no %s entry with url=%s containing %q; logged:\n%s", level, u, want, strings.Join(seen, "\n"))
	return ""
}

// assertShortBody asserts that the client got exactly msg, and none of leaks.
func assertShortBody(t *testing.T, rec *httptest.ResponseRecorder, status int, msg string, leaks ...string) {
	t.Helper()
	body := rec.Body.String()
	assertPlainError(t, rec, status, msg)
	assert.Equal(t, msg+"\n", body, "the client's text")
	for _, l := range leaks {
		assert.NotContains(t, body, l)
	}
}

// The option names, the configured limits and the addresses that no client body may carry.
var configLeaks = []string{"ProxyOptions", "AllowedHosts", "AllowPrivateNetworks", "Proxy.Err", "127.0.0.1", "localhost"}

// An empty allow list is an option error; the client is told the proxy is misconfigured,
// the log says why.
func TestProxyLeakEmptyAllowList(t *testing.T) {
	e := newCacheEnv(t, Options{})
	log, logs := observedLogger()
	p := newProxy(t, e.ic, ProxyOptions{AllowPrivateNetworks: true, Logger: log})
	u := "http://127.0.0.1:1/a.png"
	assertShortBody(t, get(t, p, u), http.StatusInternalServerError, "image proxy: misconfigured", configLeaks...)
	assertLogged(t, logs, zapcore.ErrorLevel, u, "ProxyOptions.AllowedHosts is empty", "Proxy.Err")
}

// A loopback origin refused without AllowPrivateNetworks: as a literal, as a localhost name
// and as a name resolving to loopback. The client gets "url not allowed"; the log names the
// address and the option that would allow it.
func TestProxyLeakLoopbackRefused(t *testing.T) {
	e := newCacheEnv(t, Options{})
	tr := trap(t, "127.0.0.1:0")
	port := strconv.Itoa(tr.Listener.Addr().(*net.TCPAddr).Port)
	log, logs := observedLogger()
	p := newProxy(t, e.ic, ProxyOptions{
		AllowedHosts: []string{"127.0.0.1:" + port, "localhost:" + port, "rebind.test:" + port},
		Logger:       log,
	})
	p.lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	for host, logged := range map[string]string{
		"127.0.0.1":   `host "127.0.0.1" is not globally reachable (127.0.0.0/8, loopback (RFC 1122))`,
		"localhost":   `host "localhost" is a loopback name (RFC 6761)`,
		"rebind.test": `host "rebind.test" resolves to 127.0.0.1`,
	} {
		u := "http://" + host + ":" + port + "/a.png"
		assertShortBody(t, get(t, p, u), http.StatusForbidden, "image proxy: url not allowed", configLeaks...)
		text := assertLogged(t, logs, zapcore.InfoLevel, u, logged, "set ProxyOptions.AllowPrivateNetworks to allow it")
		assert.NotContains(t, text, "\n", "one line per refusal")
	}
	assert.Zero(t, tr.conns.Load(), "a connection reached the trap")
}

// A port off the allow list: the client gets "url not allowed"; the log gives the
// AllowedHosts entry to add.
func TestProxyLeakPortRefused(t *testing.T) {
	e := newCacheEnv(t, Options{})
	tr := trap(t, "127.0.0.1:0")
	port := strconv.Itoa(tr.Listener.Addr().(*net.TCPAddr).Port)
	log, logs := observedLogger()
	p := newProxy(t, e.ic, ProxyOptions{AllowedHosts: []string{"127.0.0.1", "cdn.test"}, AllowPrivateNetworks: true, Logger: log})
	var lookups atomic.Int64
	p.lookup = func(context.Context, string) ([]netip.Addr, error) {
		lookups.Add(1)
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	for u, entry := range map[string]string{
		"http://127.0.0.1:" + port + "/a.png": "127.0.0.1:" + port,
		"https://cdn.test:" + port + "/a.png": "cdn.test:" + port,
		"http://CDN.test.:" + port + "/b.png": "cdn.test:" + port,
		"http://127.0.0.1:6379/":              "127.0.0.1:6379",
		"http://cdn.test:6379/":               "cdn.test:6379",
	} {
		assertShortBody(t, get(t, p, u), http.StatusForbidden, "image proxy: url not allowed", append(configLeaks, port, "6379")...)
		assertLogged(t, logs, zapcore.InfoLevel, u, fmt.Sprintf("add %q to ProxyOptions.AllowedHosts to allow it", entry),
			"an AllowedHosts entry without a port allows only 80 and 443")
	}
	u := "http://other.test/a.png"
	assertShortBody(t, get(t, p, u), http.StatusForbidden, "image proxy: url not allowed", configLeaks...)
	assertLogged(t, logs, zapcore.InfoLevel, u, `host "other.test" is not allowed: it is not on ProxyOptions.AllowedHosts`)
	assert.Zero(t, lookups.Load(), "a refused port was looked up")
	assert.Zero(t, tr.conns.Load(), "a connection reached the trap")
}

// An origin that refuses the connection: the client gets "origin failed", not the dial
// error with the origin's address.
func TestProxyLeakDialError(t *testing.T) {
	e := newCacheEnv(t, Options{})
	o := newOrigin(t, servePNG(pngBytes(10, 1)))
	o.Close() // its port now refuses connections
	log, logs := observedLogger()
	p := openProxy(t, e, ProxyOptions{Logger: log}, o)
	u := o.URL + "/a.png"
	assertShortBody(t, get(t, p, u), http.StatusBadGateway, "image proxy: origin failed", "127.0.0.1", "refused", "dial", "connect")
	assertLogged(t, logs, zapcore.DebugLevel, u, "origin fetch failed", "connection refused", o.Listener.Addr().String())
}

// A DNS failure: the client gets "origin failed", not the resolver's address. The lookup is
// the test's: no query leaves the machine.
func TestProxyLeakDNSError(t *testing.T) {
	e := newCacheEnv(t, Options{})
	log, logs := observedLogger()
	p := newProxy(t, e.ic, ProxyOptions{AllowedHosts: []string{"x.example"}, Logger: log})
	var looked []string
	p.lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		looked = append(looked, host)
		return nil, &net.DNSError{Err: "no such host", Name: host, Server: "10.0.0.53:53", IsNotFound: true}
	}
	u := "http://x.example/a.png"
	assertShortBody(t, get(t, p, u), http.StatusBadGateway, "image proxy: origin failed", "10.0.0.53", "no such host", "lookup", "x.example")
	assertLogged(t, logs, zapcore.DebugLevel, u, "origin fetch failed", "lookup x.example on 10.0.0.53:53: no such host")
	assert.Equal(t, []string{"x.example"}, looked)
}

// Every refusal of the guard, at each step, names the option that would allow the request:
// the operator reads it in the log.
func TestGuardRefusalsNameTheOption(t *testing.T) {
	e := newCacheEnv(t, Options{})
	tr := trap(t, "127.0.0.1:0")
	port := strconv.Itoa(tr.Listener.Addr().(*net.TCPAddr).Port)
	p := newProxy(t, e.ic, ProxyOptions{AllowedHosts: []string{"127.0.0.1:" + port, "localhost:" + port, "cdn.test"}})
	p.lookup = func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("10.1.2.3")}, nil
	}
	ctx := context.Background()
	_, viaName := p.dialContext(ctx, "tcp", "cdn.test:443")
	_, viaLocalhost := p.dialContext(ctx, "tcp", "localhost:"+port)
	_, viaLiteral := p.dialContext(ctx, "tcp", "127.0.0.1:"+port)
	_, viaPort := p.dialContext(ctx, "tcp", "cdn.test:"+port)
	checkedURL := func(raw string) error {
		u, err := url.Parse(raw)
		require.NoError(t, err)
		return p.checkURL(u)
	}
	for name, c := range map[string]struct {
		err    error
		option string
	}{
		"url host":         {checkedURL("http://other.test/"), `it is not on ProxyOptions.AllowedHosts`},
		"url port":         {checkedURL("http://cdn.test:" + port + "/"), `add "cdn.test:` + port + `" to ProxyOptions.AllowedHosts`},
		"url literal":      {checkedURL("http://127.0.0.1:" + port + "/"), "set ProxyOptions.AllowPrivateNetworks to allow it"},
		"url localhost":    {checkedURL("http://localhost:" + port + "/"), "set ProxyOptions.AllowPrivateNetworks to allow it"},
		"empty allow list": {(&Proxy{}).checkURL(&url.URL{Scheme: "http", Host: "cdn.test"}), "ProxyOptions.AllowedHosts is empty"},
		"dial resolved":    {viaName, `host "cdn.test" resolves to 10.1.2.3, not globally reachable (10.0.0.0/8, private-use (RFC 1918)): set ProxyOptions.AllowPrivateNetworks`},
		"dial localhost":   {viaLocalhost, "set ProxyOptions.AllowPrivateNetworks to allow it"},
		"dial literal":     {viaLiteral, "set ProxyOptions.AllowPrivateNetworks to allow it"},
		"dial port":        {viaPort, "cdn.test:" + port + " is not on ProxyOptions.AllowedHosts"},
		"connect":          {p.control("tcp4", "10.0.0.1:80", nil), "set ProxyOptions.AllowPrivateNetworks to allow it"},
	} {
		if assert.ErrorIs(t, c.err, errBlocked, name) {
			assert.Contains(t, c.err.Error(), c.option, name)
		}
	}
	assert.Zero(t, tr.conns.Load(), "a connection reached the trap")
}
