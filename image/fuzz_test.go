package image

import (
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// FuzzCheckURL feeds the proxy's URL validation arbitrary URLs. It never dials: checkURL is
// pure. Whatever it lets through must be http(s), on the allow-list, and not a private or
// reserved address literal, even though a loopback literal is on the allow-list, and on an
// allowed port: 80 or 443, or 8080 for the one entry that names it.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"https://example.com/a.png", "http://127.0.0.1/x", "http://0x7f000001/", "http://2130706433/",
		"http://127.1/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://localhost/", "http://a.localhost/",
		"http://169.254.169.254/latest/meta-data", "http://user@example.com/", "ftp://example.com/",
		"http://0177.0.0.1/", "http://example.com:8080/", "http://EXAMPLE.com./", "http://[fe80::1%25eth0]/",
		"http://sub.example.com/", "http://10.0.0.1/", "//example.com/", "http:example.com",
		"http://example.com:6379/", "https://example.com:443/", "http://example.com:08080/", "http://a.example.com:8080/",
		"http://example.com:65536/", "http://[::ffff:0:7f00:1]/", "http://example.com:/",
	} {
		f.Add(s)
	}
	hosts, err := newHostList([]string{"example.com", "*.example.com", "127.0.0.1", "[::1]", "localhost", "example.com:8080"})
	if err != nil {
		f.Fatal(err)
	}
	p := &Proxy{hosts: hosts, addrAllowed: isPublicAddr}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		if err := p.checkURL(u); err != nil {
			return
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("%q: scheme %q let through", raw, u.Scheme)
		}
		host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
		if a, err := netip.ParseAddr(host); err == nil && !isPublicAddr(a) {
			t.Fatalf("%q: private address %v let through", raw, a)
		}
		if host != "example.com" && !strings.HasSuffix(host, ".example.com") {
			t.Fatalf("%q: host %q let through", raw, host)
		}
		switch port := u.Port(); {
		case port == "", port == "80", port == "443", port == "8080" && host == "example.com":
		default:
			t.Fatalf("%q: port %q of %q let through (now %q)", raw, port, host, u.Host)
		}
	})
}

// FuzzAddrGuard checks the address guard on arbitrary addresses, as a pure function: an
// address it lets through is global unicast by the standard library's predicates and in no
// refused range (unless it embeds an IPv4 address), and every IPv6 form of an IPv4 address
// (mapped, NAT64, 6to4) is judged like that address.
func FuzzAddrGuard(f *testing.F) {
	for _, s := range []string{"8.8.8.8", "127.0.0.1", "::ffff:0:7f00:1", "64:ff9b::808:808", "2002:a00:1::1",
		"2001:4860:4860::8888", "fe80::1", "3fff::1", "2001:2::1", "192.88.99.1", "169.254.169.254"} {
		b := netip.MustParseAddr(s).As16()
		f.Add(b[:])
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var b [16]byte
		copy(b[:], raw)
		a := netip.AddrFrom16(b)
		if isPublicAddr(a) {
			u := a.Unmap()
			if !u.IsGlobalUnicast() || u.IsPrivate() || u.IsLoopback() || u.IsLinkLocalUnicast() || u.IsMulticast() {
				t.Fatalf("%v let through: not global unicast", a)
			}
			if !nat64Prefix.Contains(u) && !sixToFour.Contains(u) {
				for _, rr := range refusedRanges {
					if rr.prefix.Contains(u) {
						t.Fatalf("%v let through: in %v", a, rr.prefix)
					}
				}
			}
		}
		v4 := netip.AddrFrom4([4]byte(b[12:16]))
		want := isPublicAddr(v4)
		var nat64, six [16]byte
		copy(nat64[:], nat64Prefix.Addr().AsSlice())
		copy(nat64[12:], b[12:16])
		six[0], six[1] = 0x20, 0x02
		copy(six[2:6], b[12:16])
		six[15] = 1
		for _, form := range []netip.Addr{netip.AddrFrom16(v4.As16()), netip.AddrFrom16(nat64), netip.AddrFrom16(six)} {
			if isPublicAddr(form) != want {
				t.Fatalf("%v is judged unlike %v (public: %v)", form, v4, want)
			}
		}
	})
}
