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
	"sync/atomic"
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
	l, err := newHostList([]string{"CDN.example.com.", "*.img.example", "10.0.0.1", "[::1]", " ::2 ",
		"cdn.example.com:8443", "[::1]:8080", "127.0.0.1:9000", "*.port.example:8443", "Other.example:80"})
	require.NoError(t, err)
	for hp, want := range map[string]bool{
		"cdn.example.com:80": true, "cdn.example.com:443": true, "cdn.example.com:8443": true, "cdn.example.com:8080": false,
		"a.img.example:443": true, "a.b.img.example:80": true, "a.img.example:8443": false, "img.example:443": false,
		"example.com:443": false, "10.0.0.1:443": true, "10.0.0.1:6379": false, "evilcdn.example.com:443": false,
		"[::1]:443": true, "[::1]:8080": true, "[::1]:8081": false, "[::2]:80": true,
		"127.0.0.1:9000": true, "127.0.0.1:80": false, "127.0.0.1:443": false,
		"a.port.example:8443": true, "a.port.example:443": false, "port.example:8443": false,
		"other.example:80": true, "other.example:443": false,
	} {
		host, portText, err := net.SplitHostPort(hp)
		require.NoError(t, err)
		port, err := strconv.Atoi(portText)
		require.NoError(t, err)
		assert.Equal(t, want, l.allows(host, uint16(port)), hp)
	}
	for _, bad := range []string{"", "*", "a/b", "user@host", "a*b", "a:0", "a:65536", "a:x", "a:", ":80", "a:+80",
		"[::1]:", "[::1]x", "*.a:b:c", "a:80:80", "*:80", "a b"} {
		_, err := newHostList([]string{bad})
		if assert.Error(t, err, bad) {
			assert.Contains(t, err.Error(), "ProxyOptions.AllowedHosts entry", bad)
		}
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
		allowed[i] = h + ":" + port
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
		"target allowed: the address check refuses":  {fromURL.Host, tr.Listener.Addr().String()},
		"target not allowed: the allow-list refuses": {fromURL.Host},
		"target port not allowed":                    {fromURL.Host, "127.0.0.2"},
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
	p := newProxy(t, e.ic, ProxyOptions{AllowedHosts: []string{"rebind.test:" + port}})
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

// The guard is a pure function of the address: these cases come from the IANA IPv4 and IPv6
// Special-Purpose Address Registries (every entry that is not globally reachable), the
// multicast and IPv6 address-space registries, and forms that embed an IPv4 address. Nothing
// here is dialled.
func TestGuardRefusesNonGlobalRanges(t *testing.T) {
	refused := []string{
		// IPv4 special-purpose registry
		"0.0.0.0", "0.255.255.255", // this network, this host
		"10.0.0.0", "10.255.255.255", // private-use
		"100.64.0.0", "100.127.255.255", // shared address space
		"127.0.0.0", "127.255.255.255", // loopback
		"169.254.0.0", "169.254.169.254", "169.254.255.255", // link-local, cloud metadata
		"172.16.0.0", "172.31.255.255", // private-use
		"192.0.0.0", "192.0.0.8", "192.0.0.170", "192.0.0.171", "192.0.0.192", "192.0.0.255", // IETF protocol assignments
		"192.0.2.0", "192.0.2.255", // TEST-NET-1
		"192.88.99.0", "192.88.99.1", "192.88.99.255", // deprecated 6to4 relay anycast
		"192.168.0.0", "192.168.255.255", // private-use
		"198.18.0.0", "198.19.255.255", // benchmarking
		"198.51.100.0", "198.51.100.255", // TEST-NET-2
		"203.0.113.0", "203.0.113.255", // TEST-NET-3
		"224.0.0.0", "239.255.255.255", // multicast
		"240.0.0.0", "255.255.255.254", "255.255.255.255", // reserved, limited broadcast

		// IPv6 special-purpose registry and the IETF-reserved ::/8
		"::", "::1", // unspecified, loopback
		"::ffff:0:7f00:1", "::ffff:0:a9fe:a9fe", "::ffff:0:808:808", // SIIT ::ffff:0:0/96 (RFC 2765)
		"::1:7f00:1", "::7f00:1", "::a9fe:a9fe", "::808:808", "0:1::", "ff:ffff::1", // rest of ::/8, IPv4-compatible
		"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", // NAT64 of non-public IPv4
		"64:ff9b:1::", "64:ff9b:1::808:808", "64:ff9b:1:ffff:ffff:ffff:ffff:ffff", // local-use NAT64
		"100::", "100::ffff:ffff:ffff:ffff", // discard-only
		"100:0:0:1::", "100:0:0:1:ffff:ffff:ffff:ffff", // dummy prefix
		"2001::", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:1ff:ffff::1", // IETF protocol assignments, Teredo
		"2001:2::", "2001:2:0:ffff:ffff:ffff:ffff:ffff", // benchmarking
		"2001:10::1", "2001:1f::1", // deprecated ORCHID
		"2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", // documentation
		"2002:7f00:1::", "2002:a00:1::1", "2002:a9fe:a9fe::1", "2002:c0a8:101::1", "2002::", // 6to4 of non-public IPv4
		"3fff::", "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", // documentation (RFC 9637)
		"5f00::", "5f00:ffff::1", // SRv6 SIDs
		"fc00::", "fd00:ec2::254", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", // unique-local, AWS metadata
		"fe80::", "fe80::1%eth0", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", // link-local
		"fec0::1",                      // site-local (deprecated)
		"ff00::", "ff02::1", "ff0e::1", // multicast
		"4000::1", "8000::1", "e000::1", "fe00::1", "200::1", "1000::1", // outside 2000::/3: reserved by IETF

		// IPv4-mapped forms of the above
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:192.88.99.1", "::ffff:0.0.0.0",
	}
	for _, s := range refused {
		assert.False(t, isPublicAddr(netip.MustParseAddr(s)), "%s is not globally reachable", s)
	}
	allowed := []string{
		"8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "192.0.3.1", "192.88.98.255", "192.88.100.0",
		"198.20.0.1", "223.255.255.255", "9.255.255.255", "11.0.0.0", "169.253.255.255",
		"::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
		"2001:4860:4860::8888", "2606:4700::1111", "2001:200::1", "3000::1", "3ffe::1", "3fff:1000::1",
	}
	for _, s := range allowed {
		assert.True(t, isPublicAddr(netip.MustParseAddr(s)), "%s is globally reachable", s)
	}
}

// Every range of the table is refused from its first address to its last, and the log's
// reason names the range.
func TestGuardTableRangesRefusedWhole(t *testing.T) {
	for _, rr := range refusedRanges {
		first := rr.prefix.Masked().Addr()
		last := lastAddr(rr.prefix)
		for _, a := range []netip.Addr{first, last} {
			why, refused := refusedRange(a)
			assert.True(t, refused, "%s in %s", a, rr.prefix)
			assert.NotEmpty(t, why, "%s", a)
		}
	}
	why, _ := refusedRange(netip.MustParseAddr("::ffff:0:7f00:1"))
	assert.Contains(t, why, "::/8")
	why, _ = refusedRange(netip.MustParseAddr("64:ff9b::a9fe:a9fe"))
	assert.Contains(t, why, "169.254.169.254")
	assert.Contains(t, why, "link-local")
	why, _ = refusedRange(netip.MustParseAddr("127.0.0.1"))
	assert.Equal(t, "127.0.0.0/8, loopback (RFC 1122)", why)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// An allowed host without a port allows only ports 80 and 443: another port of it, such as
// a Redis on 6379, is refused before any lookup or connection.
func TestPortNotOnAllowListRefusedWithoutConnecting(t *testing.T) {
	e := newCacheEnv(t, Options{})
	tr := trap(t, "127.0.0.1:0")
	port := strconv.Itoa(tr.Listener.Addr().(*net.TCPAddr).Port)
	p := newProxy(t, e.ic, ProxyOptions{AllowedHosts: []string{"127.0.0.1", "cdn.test", "*.img.test"}, AllowPrivateNetworks: true})
	var lookups atomic.Int64
	p.lookup = func(context.Context, string) ([]netip.Addr, error) {
		lookups.Add(1)
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	for _, u := range []string{
		"http://127.0.0.1:" + port + "/a.png",
		"https://127.0.0.1:" + port + "/a.png",
		"http://cdn.test:" + port + "/a.png",
		"http://a.img.test:" + port + "/a.png",
		"http://cdn.test:6379/",
	} {
		rec := get(t, p, u)
		assert.Equal(t, http.StatusForbidden, rec.Code, "%s: %s", u, rec.Body.String())
	}
	assert.Zero(t, lookups.Load(), "a refused port was looked up")
	assert.Zero(t, tr.conns.Load(), "a connection reached the trap")
}
