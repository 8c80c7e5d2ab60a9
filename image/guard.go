package image

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// The SSRF guard: which URLs and addresses the proxy may reach. See the package doc for
// where each check runs.

// errBlocked marks a refusal by the guard: the proxy answers 403.
var errBlocked = errors.New("image: blocked")

// blockedError is a refusal by the guard. Its reason, for the operator's log, names the
// option that would allow the request; the client is told only msgNotAllowed.
type blockedError struct{ reason string }

func (e *blockedError) Error() string { return "image proxy: " + e.reason }
func (e *blockedError) Is(target error) bool {
	return target == errBlocked
}

// errBadURL marks a URL that cannot be fetched at all: the proxy answers 400.
var errBadURL = errors.New("image: bad url")

// badURLError is a URL that is bad as written. Its reason, about the URL only, is the
// client's answer when the client sent it, and an origin failure after a redirect.
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

// defaultPorts are the ports an AllowedHosts entry without a port allows.
var defaultPorts = [...]uint16{80, 443}

// hostList is a parsed ProxyOptions.AllowedHosts.
type hostList struct {
	exact    map[string][]uint16 // host: its ports; 0 stands for defaultPorts
	suffixes []hostSuffix        // for "*.example.com" entries
}

type hostSuffix struct {
	suffix string // ".example.com"
	port   uint16 // 0: defaultPorts
}

func newHostList(hosts []string) (hostList, error) {
	l := hostList{exact: make(map[string][]uint16, len(hosts))}
	for _, entry := range hosts {
		host, port, err := parseHostEntry(entry)
		if err != nil {
			return l, fmt.Errorf("ProxyOptions.AllowedHosts entry %q: %w", entry, err)
		}
		if strings.HasPrefix(host, "*.") {
			l.suffixes = append(l.suffixes, hostSuffix{host[1:], port})
		} else {
			l.exact[host] = append(l.exact[host], port)
		}
	}
	return l, nil
}

var errHostEntry = errors.New("want host, host:port, *.domain or *.domain:port, where host is a name or an IP address")

// parseHostEntry splits an AllowedHosts entry into its normalized host (an IP address in
// canonical form) and its port, 0 when it has none.
func parseHostEntry(entry string) (host string, port uint16, err error) {
	h := strings.TrimSpace(entry)
	var portText string
	switch {
	case strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]"):
		h = h[1 : len(h)-1]
	case strings.HasPrefix(h, "["):
		if h, portText, err = net.SplitHostPort(h); err != nil {
			return "", 0, errHostEntry
		}
	case strings.Count(h, ":") == 1:
		h, portText, _ = strings.Cut(h, ":")
	}
	if portText != "" || strings.HasSuffix(entry, ":") {
		n, err := strconv.ParseUint(portText, 10, 16)
		if err != nil || n == 0 || strings.HasPrefix(portText, "+") {
			return "", 0, fmt.Errorf("port %q is not a number from 1 to 65535", portText)
		}
		port = uint16(n)
	}
	h = normalizeHost(h)
	switch {
	case h == "" || h == "*" || h == "*.":
		return "", 0, errHostEntry
	case strings.HasPrefix(h, "*."):
		if strings.ContainsAny(h[2:], "*/@ :[]%?#\\") {
			return "", 0, errHostEntry
		}
		return h, port, nil
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return a.WithZone("").String(), port, nil
	}
	if strings.ContainsAny(h, "*/@ :[]%?#\\") {
		return "", 0, errHostEntry
	}
	return h, port, nil
}

// allowsHost reports whether host is on the list, on any port.
func (l hostList) allowsHost(host string) bool {
	if _, ok := l.exact[host]; ok {
		return true
	}
	for _, s := range l.suffixes {
		if strings.HasSuffix(host, s.suffix) {
			return true
		}
	}
	return false
}

// allows reports whether host:port is on the list.
func (l hostList) allows(host string, port uint16) bool {
	for _, p := range l.exact[host] {
		if portMatches(p, port) {
			return true
		}
	}
	for _, s := range l.suffixes {
		if strings.HasSuffix(host, s.suffix) && portMatches(s.port, port) {
			return true
		}
	}
	return false
}

func portMatches(entry, port uint16) bool {
	if entry == 0 {
		return slices.Contains(defaultPorts[:], port)
	}
	return entry == port
}

func (l hostList) empty() bool { return len(l.exact) == 0 && len(l.suffixes) == 0 }

// urlPort is u's port, or its scheme's default.
func urlPort(u *url.URL) (uint16, error) {
	ps := u.Port()
	if ps == "" {
		if u.Scheme == "https" {
			return 443, nil
		}
		return 80, nil
	}
	n, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || n == 0 {
		return 0, &badURLError{reason: fmt.Sprintf("port %q is not a number from 1 to 65535", ps)}
	}
	return uint16(n), nil
}

// checkURL applies the URL-level checks (scheme, user info, allow list with ports, literal
// and localhost addresses) to the request's URL and to every redirect. It rewrites the host
// to its canonical form (lowercase, no trailing dot, a numeric host as its IP address, the
// port without leading zeros and without the scheme's default), so that the transport never
// hands a numeric host to a resolver and dials the port that was checked.
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
	port, err := urlPort(u)
	if err != nil {
		return err
	}
	addr, isIP, err := literalAddr(host)
	if err != nil {
		return err
	}
	canonical := host
	if isIP {
		canonical = addr.WithZone("").String()
	}
	switch {
	case !p.hosts.allowsHost(host) && !p.hosts.allowsHost(canonical):
		return &blockedError{reason: fmt.Sprintf("host %q is not allowed: it is not on ProxyOptions.AllowedHosts", host)}
	case !p.hosts.allows(host, port) && !p.hosts.allows(canonical, port):
		return &blockedError{reason: fmt.Sprintf("port %d of host %q is not allowed: an AllowedHosts entry without a port allows only 80 and 443; add %q to ProxyOptions.AllowedHosts to allow it",
			port, host, net.JoinHostPort(canonical, strconv.Itoa(int(port))))}
	case isIP && !p.addrAllowed(addr):
		return &blockedError{reason: fmt.Sprintf("host %q is %s: set ProxyOptions.AllowPrivateNetworks to allow it", host, addrReason(addr))}
	case !isIP && isLocalhostName(host) && !p.addrAllowed(netip.IPv6Loopback()):
		return &blockedError{reason: fmt.Sprintf("host %q is a loopback name (RFC 6761): set ProxyOptions.AllowPrivateNetworks to allow it", host)}
	}
	h := host
	if isIP {
		h = addr.String()
	}
	if isIP && addr.Is6() {
		h = "[" + h + "]"
	}
	if !(port == 80 && u.Scheme == "http" || port == 443 && u.Scheme == "https") {
		h += ":" + strconv.Itoa(int(port))
	}
	u.Host = h
	return nil
}

// addrReason says why a is refused, for the operator.
func addrReason(a netip.Addr) string {
	why, refused := refusedRange(a)
	if !refused {
		return "not an allowed address"
	}
	return "not globally reachable (" + why + ")"
}

// dialContext is the transport's DialContext: it resolves the host itself, refuses the
// connection when any of its addresses is not allowed, and dials IP literals only.
func (p *Proxy) dialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	host = normalizeHost(host)
	portNum, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, &blockedError{reason: fmt.Sprintf("unexpected dial address %q", address)}
	}
	var addrs []netip.Addr
	a, isIP, err := literalAddr(host)
	switch {
	case err != nil:
		return nil, err
	case isIP:
		addrs = []netip.Addr{a}
		host = a.WithZone("").String()
	case isLocalhostName(host) && !p.addrAllowed(netip.IPv6Loopback()):
		return nil, &blockedError{reason: fmt.Sprintf("host %q is a loopback name (RFC 6761): set ProxyOptions.AllowPrivateNetworks to allow it", host)}
	}
	// checkURL has checked the port; this is for any path that would bypass it.
	if !p.hosts.allows(host, uint16(portNum)) {
		return nil, &blockedError{reason: fmt.Sprintf("%s is not on ProxyOptions.AllowedHosts", net.JoinHostPort(host, port))}
	}
	if !isIP {
		if addrs, err = p.lookup(ctx, host); err != nil {
			return nil, err
		}
	}
	for _, a := range addrs {
		if !p.addrAllowed(a) {
			return nil, &blockedError{reason: fmt.Sprintf("host %q resolves to %s, %s: set ProxyOptions.AllowPrivateNetworks to allow it", host, a, addrReason(a))}
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
		return &blockedError{reason: fmt.Sprintf("address %s is %s: set ProxyOptions.AllowPrivateNetworks to allow it", ap.Addr(), addrReason(ap.Addr()))}
	}
	return nil
}
