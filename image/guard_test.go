package image

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests never send a packet off loopback: the classifier is pure, and every
// end-to-end target is a loopback address written as an IP literal or "localhost".

func TestIsPublicAddr(t *testing.T) {
	for _, c := range []struct {
		addr   string
		public bool
	}{
		{"10.0.0.1", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false}, // cloud metadata
		{"100.64.0.1", false},      // CGNAT
		{"100.100.100.200", false}, // Alibaba metadata, in CGNAT
		{"fc00::1", false},
		{"fd00:ec2::254", false}, // AWS IPv6 metadata
		{"fe80::1", false},
		{"fe80::1%eth0", false},
		{"::ffff:10.0.0.1", false},
		{"::ffff:127.0.0.1", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"::", false},
		{"::1", false},
		{"127.0.0.1", false},
		{"127.0.0.2", false},
		{"224.0.0.1", false},
		{"ff02::1", false},
		{"255.255.255.255", false},
		{"240.0.0.1", false},
		{"192.0.0.192", false},
		{"192.0.2.1", false},
		{"198.18.0.1", false},
		{"::10.0.0.1", false},          // IPv4-compatible
		{"64:ff9b::a00:1", false},      // NAT64 of 10.0.0.1
		{"2002:a00:1::1", false},       // 6to4 of 10.0.0.1
		{"2001:0:4136:e378::1", false}, // Teredo
		{"2001:db8::1", false},
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"172.32.0.1", true},
		{"::ffff:8.8.8.8", true},
		{"64:ff9b::808:808", true}, // NAT64 of 8.8.8.8
		{"2001:4860:4860::8888", true},
	} {
		a := netip.MustParseAddr(c.addr)
		assert.Equal(t, c.public, isPublicAddr(a), c.addr)
	}
	assert.False(t, isPublicAddr(netip.Addr{}))
}

func TestParseLooseIPv4(t *testing.T) {
	for in, want := range map[string]string{
		"0x7f000001":   "127.0.0.1",
		"0X7F000001":   "127.0.0.1",
		"2130706433":   "127.0.0.1",
		"127.1":        "127.0.0.1",
		"127.0.1":      "127.0.0.1",
		"0177.0.0.1":   "127.0.0.1",
		"0x7f.1":       "127.0.0.1",
		"10.0.0.1":     "10.0.0.1",
		"017700000001": "127.0.0.1",
		"0":            "0.0.0.0",
	} {
		a, ok := parseLooseIPv4(in)
		if assert.True(t, ok, in) {
			assert.Equal(t, want, a.String(), in)
		}
	}
	for _, in := range []string{"example.com", "256.1", "1.2.3.4.5", "0x", "1.256.1.1", "4294967296", "08", "a.b", "", "1..2", "-1", "+1"} {
		_, ok := parseLooseIPv4(in)
		assert.False(t, ok, in)
	}
	for _, in := range []string{"1.2.3.999", "example.0x1g"} {
		_, _, err := literalAddr(in)
		if in == "1.2.3.999" {
			assert.ErrorIs(t, err, errBadURL, in)
		} else {
			assert.NoError(t, err, in)
		}
	}
}

func TestHostList(t *testing.T) {
	l, err := newHostList([]string{"CDN.example.com.", "*.img.example", "10.0.0.1", "[::1]"})
	require.NoError(t, err)
	for h, want := range map[string]bool{
		"cdn.example.com": true, "a.img.example": true, "a.b.img.example": true, "img.example": false,
		"example.com": false, "10.0.0.1": true, "::1": true, "evilcdn.example.com": false,
	} {
		assert.Equal(t, want, l.allows(h), h)
	}
	for _, bad := range []string{"", "*", "a/b", "a:80", "user@host", "a*b"} {
		_, err := newHostList([]string{bad})
		assert.Error(t, err, bad)
	}
}

// trap is a loopback server that must never be reached: it counts accepted connections.
func trap(t *testing.T, addr string) *origin {
	t.Helper()
	o := &origin{}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	o.Server = newUnstartedOn(ln, func(w http.ResponseWriter, r *http.Request) { o.requests.Add(1) })
	o.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			o.conns.Add(1)
		}
	}
	o.Start()
	t.Cleanup(o.Close)
	return o
}

func TestSSRFLiteralsRefusedBeforeConnecting(t *testing.T) {
	e := newCacheEnv(t, Options{})
	tr := trap(t, "127.0.0.1:0")
	port := strconv.Itoa(tr.Listener.Addr().(*net.TCPAddr).Port)
	hosts := []string{"127.0.0.1", "localhost", "[::1]", "0x7f000001", "2130706433", "127.1", "0177.0.0.1",
		"[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "0.0.0.0", "sub.localhost"}
	allowed := make([]string, len(hosts))
	for i, h := range hosts {
		allowed[i] = strings.Trim(h, "[]")
	}
	p := newProxy(t, e.ic, ProxyOptions{AllowedHosts: allowed})
	for _, h := range hosts {
		rec := get(t, p, "http://"+h+":"+port+"/a.png")
		assert.Equal(t, http.StatusForbidden, rec.Code, h)
		assert.Contains(t, rec.Body.String(), "image proxy:", h)
	}
	assert.Zero(t, tr.conns.Load(), "a connection reached the trap")
}

func TestSSRFRedirectToPrivateAddressRefused(t *testing.T) {
	e := newCacheEnv(t, Options{})
	tr := trap(t, "127.0.0.2:0")
	target := "http://" + tr.Listener.Addr().String() + "/secret.png"
	from := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target, http.StatusFound)
	})
	fromURL, _ := url.Parse(from.URL)

	for name, allowed := range map[string][]string{
		"target allowed: the address check refuses":  {"127.0.0.1", "127.0.0.2"},
		"target not allowed: the allow-list refuses": {"127.0.0.1"},
	} {
		t.Run(name, func(t *testing.T) {
			p := newProxy(t, e.ic, ProxyOptions{AllowedHosts: allowed})
			// The allowed origin stands in for a public host: only its exact address is let
			// through.
			p.addrAllowed = func(a netip.Addr) bool {
				return isPublicAddr(a) || a == netip.MustParseAddr(fromURL.Hostname())
			}
			rec := get(t, p, from.URL+"/a.png")
			assert.Equal(t, http.StatusForbidden, rec.Code, rec.Body.String())
		})
	}
	assert.Positive(t, from.requests.Load())
	assert.Zero(t, tr.conns.Load(), "a connection reached the trap")
}

// A name that resolves to a private address (DNS rebinding) is refused by the dialer.
func TestSSRFNameResolvingToLoopbackRefused(t *testing.T) {
	e := newCacheEnv(t, Options{})
	tr := trap(t, "127.0.0.1:0")
	port := strconv.Itoa(tr.Listener.Addr().(*net.TCPAddr).Port)
	p := newProxy(t, e.ic, ProxyOptions{AllowedHosts: []string{"rebind.test"}})
	var lookups int
	p.lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		lookups++
		if host != "rebind.test" {
			return nil, fmt.Errorf("unexpected lookup of %q", host)
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	rec := get(t, p, "http://rebind.test:"+port+"/a.png")
	assert.Equal(t, http.StatusForbidden, rec.Code, rec.Body.String())
	assert.Equal(t, 1, lookups)
	assert.Zero(t, tr.conns.Load())
}

// The dialer's Control hook refuses even when the DialContext checks are bypassed.
func TestSSRFDialerControlRefuses(t *testing.T) {
	e := newCacheEnv(t, Options{})
	tr := trap(t, "127.0.0.1:0")
	p := newProxy(t, e.ic, ProxyOptions{AllowedHosts: []string{"127.0.0.1"}})
	_, err := p.dialer.DialContext(context.Background(), "tcp", tr.Listener.Addr().String())
	require.Error(t, err)
	assert.ErrorIs(t, err, errBlocked)
	_, err = p.dialContext(context.Background(), "tcp", tr.Listener.Addr().String())
	assert.ErrorIs(t, err, errBlocked)
	_, err = p.dialContext(context.Background(), "tcp", "localhost:"+strconv.Itoa(tr.Listener.Addr().(*net.TCPAddr).Port))
	assert.ErrorIs(t, err, errBlocked)
	assert.Zero(t, tr.conns.Load())
	assert.True(t, errors.Is(p.control("tcp4", "10.0.0.1:80", nil), errBlocked))
	assert.NoError(t, p.control("tcp4", "8.8.8.8:80", nil)) // checked, never dialled
}

func TestEmptyAllowListDeniesEverything(t *testing.T) {
	e := newCacheEnv(t, Options{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {})
	p := newProxy(t, e.ic, ProxyOptions{AllowPrivateNetworks: true})
	require.ErrorIs(t, p.Err(), ErrInvalidOptions, "an empty allow list is a configuration error, seen before the first request")
	assert.Contains(t, p.Err().Error(), "AllowedHosts is empty")
	rec := get(t, p, o.URL+"/a.png")
	assert.Equal(t, http.StatusInternalServerError, rec.Code)
	assert.NotContains(t, rec.Body.String(), "AllowedHosts", "the configuration is for the operator, not the client")
	assert.Zero(t, o.conns.Load())
}

func TestHostNotAllowed(t *testing.T) {
	e := newCacheEnv(t, Options{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {})
	p := newProxy(t, e.ic, ProxyOptions{AllowedHosts: []string{"cdn.example"}, AllowPrivateNetworks: true})
	rec := get(t, p, o.URL+"/a.png")
	assert.Equal(t, http.StatusForbidden, rec.Code)
	assert.Contains(t, rec.Body.String(), "not allowed")
	assert.Zero(t, o.conns.Load())
}
