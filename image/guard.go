package image

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
)

// The SSRF guard: which URLs and addresses the proxy may reach. See the package doc for
// where each check runs.

// errBlocked marks a refusal by the guard: the proxy answers 403.
var errBlocked = errors.New("image: blocked")

// blockedError is a refusal by the guard, with the reason shown to the client.
type blockedError struct{ reason string }

func (e *blockedError) Error() string { return "image proxy: " + e.reason }
func (e *blockedError) Is(target error) bool {
	return target == errBlocked
}

// errBadURL marks a URL that cannot be fetched at all: the proxy answers 400.
var errBadURL = errors.New("image: bad url")

type badURLError struct{ reason string }

func (e *badURLError) Error() string        { return "image proxy: " + e.reason }
func (e *badURLError) Is(target error) bool { return target == errBadURL }

// parseLooseIPv4 decodes the IPv4 forms that inet_aton and browsers accept beyond dotted
// quads: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x), the last part filling
// the remaining bytes (2130706433, 0x7f000001, 127.1, 0177.0.0.1).
func parseLooseIPv4(host string) (netip.Addr, bool) {
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var ip uint64
	for i, p := range parts {
		base := 10
		switch {
		case len(p) > 2 && (p[:2] == "0x" || p[:2] == "0X"):
			base, p = 16, p[2:]
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		n, err := strconv.ParseUint(p, base, 32)
		if err != nil || p == "" || p[0] == '+' || p[0] == '-' {
			return netip.Addr{}, false
		}
		if i < len(parts)-1 {
			if n > 255 {
				return netip.Addr{}, false
			}
			ip |= n << (8 * (3 - i))
			continue
		}
		if n >= 1<<(8*(4-i)) {
			return netip.Addr{}, false
		}
		ip |= n
	}
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), true
}

// endsInNumber reports whether host's last label is numeric: WHATWG URL treats such a host
// as an IPv4 address, so it must parse as one.
func endsInNumber(host string) bool {
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	if len(last) >= 2 && (last[:2] == "0x" || last[:2] == "0X") {
		last = last[2:]
		return strings.Trim(last, "0123456789abcdefABCDEF") == ""
	}
	return strings.Trim(last, "0123456789") == ""
}

// literalAddr decodes host when it is an IP address in any form, without DNS. ok is false
// for a name.
func literalAddr(host string) (a netip.Addr, ok bool, err error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a, true, nil
	}
	if a, ok := parseLooseIPv4(host); ok {
		return a, true, nil
	}
	if endsInNumber(host) {
		return netip.Addr{}, false, &badURLError{reason: fmt.Sprintf("host %q is neither a valid IP address nor a name", host)}
	}
	return netip.Addr{}, false, nil
}

// isLocalhostName reports names that resolve to loopback without asking DNS (RFC 6761).
func isLocalhostName(host string) bool {
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// normalizeHost lowercases host and drops a trailing dot.
func normalizeHost(host string) string {
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// hostList is a parsed ProxyOptions.AllowedHosts.
type hostList struct {
	exact    map[string]bool
	suffixes []string // ".example.com" for "*.example.com"
}

func newHostList(hosts []string) (hostList, error) {
	l := hostList{exact: make(map[string]bool, len(hosts))}
	for _, h := range hosts {
		h = normalizeHost(strings.TrimSpace(h))
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		switch {
		case h == "" || h == "*" || h == "*.":
			return l, fmt.Errorf("AllowedHosts entry %q: want a host name, an IP address or *.domain", h)
		case strings.HasPrefix(h, "*."):
			l.suffixes = append(l.suffixes, h[1:])
		case strings.ContainsAny(h, "*/@ "):
			return l, fmt.Errorf("AllowedHosts entry %q: want a host name, an IP address or *.domain", h)
		case strings.Contains(h, ":"):
			a, err := netip.ParseAddr(h)
			if err != nil {
				return l, fmt.Errorf("AllowedHosts entry %q: want a host without a port", h)
			}
			l.exact[a.String()] = true
		default:
			l.exact[h] = true
		}
	}
	return l, nil
}

func (l hostList) allows(host string) bool {
	if l.exact[host] {
		return true
	}
	for _, s := range l.suffixes {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

func (l hostList) empty() bool { return len(l.exact) == 0 && len(l.suffixes) == 0 }

// checkURL applies the URL-level checks (scheme, user info, allow-list, literal and
// localhost addresses) to the request's URL and to every redirect. It rewrites a numeric
// host to its canonical IP form, so that the transport never hands it to a resolver.
func (p *Proxy) checkURL(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return &badURLError{reason: fmt.Sprintf("scheme %q not allowed: only http and https", u.Scheme)}
	}
	if u.User != nil {
		return &badURLError{reason: "urls with user info are not allowed"}
	}
	if u.Opaque != "" {
		return &badURLError{reason: "opaque urls are not allowed"}
	}
	host := normalizeHost(u.Hostname())
	if host == "" {
		return &badURLError{reason: "url has no host"}
	}
	if p.hosts.empty() {
		return &blockedError{reason: "no hosts are allowed: ProxyOptions.AllowedHosts is empty"}
	}
	addr, isIP, err := literalAddr(host)
	if err != nil {
		return err
	}
	canonical := host
	if isIP {
		canonical = addr.WithZone("").String()
	}
	if !p.hosts.allows(host) && !p.hosts.allows(canonical) {
		return &blockedError{reason: fmt.Sprintf("host %q is not allowed", host)}
	}
	switch {
	case isIP && !p.addrAllowed(addr):
		return &blockedError{reason: fmt.Sprintf("host %q is a private or reserved address", host)}
	case !isIP && isLocalhostName(host) && !p.addrAllowed(netip.IPv6Loopback()):
		return &blockedError{reason: fmt.Sprintf("host %q is a loopback name", host)}
	}
	if isIP {
		h := addr.String()
		if addr.Is6() {
			h = "[" + h + "]"
		}
		if port := u.Port(); port != "" {
			h += ":" + port
		}
		u.Host = h
	}
	return nil
}

// dialContext is the transport's DialContext: it resolves the host itself, refuses the
// connection when any of its addresses is not allowed, and dials IP literals only.
func (p *Proxy) dialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	host = normalizeHost(host)
	var addrs []netip.Addr
	if a, isIP, err := literalAddr(host); err != nil {
		return nil, err
	} else if isIP {
		addrs = []netip.Addr{a}
	} else {
		if isLocalhostName(host) && !p.addrAllowed(netip.IPv6Loopback()) {
			return nil, &blockedError{reason: fmt.Sprintf("host %q is a loopback name", host)}
		}
		if addrs, err = p.lookup(ctx, host); err != nil {
			return nil, err
		}
	}
	for _, a := range addrs {
		if !p.addrAllowed(a) {
			return nil, &blockedError{reason: fmt.Sprintf("host %q resolves to a private or reserved address", host)}
		}
	}
	var firstErr error
	for _, a := range addrs {
		conn, err := p.dialer.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("image proxy: no addresses for %q", host)
	}
	return nil, firstErr
}

// control runs just before connect(2) with the address actually dialled: the last check.
func (p *Proxy) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &blockedError{reason: fmt.Sprintf("unexpected dial address %q", address)}
	}
	if !p.addrAllowed(ap.Addr()) {
		return &blockedError{reason: fmt.Sprintf("address %s is private or reserved", ap.Addr())}
	}
	return nil
}
