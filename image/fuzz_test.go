package image

import (
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// FuzzCheckURL feeds the proxy's URL validation arbitrary URLs. It never dials: checkURL is
// pure. Whatever it lets through must be http(s), on the allow-list, and not a private or
// reserved address literal, even though a loopback literal is on the allow-list.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"https://example.com/a.png", "http://127.0.0.1/x", "http://0x7f000001/", "http://2130706433/",
		"http://127.1/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://localhost/", "http://a.localhost/",
		"http://169.254.169.254/latest/meta-data", "http://user@example.com/", "ftp://example.com/",
		"http://0177.0.0.1/", "http://example.com:8080/", "http://EXAMPLE.com./", "http://[fe80::1%25eth0]/",
		"http://sub.example.com/", "http://10.0.0.1/", "//example.com/", "http:example.com",
	} {
		f.Add(s)
	}
	hosts, err := newHostList([]string{"example.com", "*.example.com", "127.0.0.1", "[::1]", "localhost"})
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
	})
}
