package image

import "net/netip"

// The address half of the guard: which IP addresses the proxy may connect to. It is a pure
// function of the address, so it is tested on addresses, never by dialling.

// addrRange is a range the proxy refuses, with the registry entry it comes from.
type addrRange struct {
	prefix netip.Prefix
	name   string // the registry's name for it, in the operator's log
}

func refuse(prefix, name string) addrRange {
	return addrRange{netip.MustParsePrefix(prefix), name}
}

// refusedRanges are, from the IANA IPv4 and IPv6 Special-Purpose Address Registries
// (RFC 6890; checked against the registries as of 2025), every entry that is not globally
// reachable, and the non-unicast and unallocated space around them. A few globally reachable
// entries fall inside a refused range and are refused with it, as no image origin lives
// there: PCP and TURN anycast 192.0.0.9 and 192.0.0.10 (in 192.0.0.0/24); 2001:1::1-3,
// AMT 2001:3::/32, AS112 2001:4:112::/48, ORCHIDv2 2001:20::/28 and DETs 2001:30::/28 (in
// 2001::/23). The other globally reachable entries (AS112 192.31.196.0/24, 192.175.48.0/24
// and 2620:4f:8000::/48, AMT 192.52.193.0/24, and NAT64 64:ff9b::/96 and 6to4 2002::/16,
// which embed an IPv4 address and are judged by it) are allowed.
//
// IPv4-mapped addresses (::ffff:0:0/96) are unmapped before the lookup: the socket connects
// to the IPv4 address.
var refusedRanges = [...]addrRange{
	// IANA IPv4 Special-Purpose Address Registry.
	refuse("0.0.0.0/8", `"this network" (RFC 791), incl. "this host" 0.0.0.0/32 (RFC 1122)`),
	refuse("10.0.0.0/8", "private-use (RFC 1918)"),
	refuse("100.64.0.0/10", "shared address space, CGNAT (RFC 6598), incl. Alibaba Cloud's metadata 100.100.100.200"),
	refuse("127.0.0.0/8", "loopback (RFC 1122)"),
	refuse("169.254.0.0/16", "link-local (RFC 3927), incl. the cloud metadata address 169.254.169.254"),
	refuse("172.16.0.0/12", "private-use (RFC 1918)"),
	// 192.0.0.0/29 IPv4 service continuity (RFC 7335), 192.0.0.8/32 dummy (RFC 7600),
	// 192.0.0.170-171 NAT64/DNS64 discovery (RFC 8880), Oracle Cloud's metadata 192.0.0.192.
	refuse("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
	refuse("192.0.2.0/24", "documentation, TEST-NET-1 (RFC 5737)"),
	refuse("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"),
	refuse("192.168.0.0/16", "private-use (RFC 1918)"),
	refuse("198.18.0.0/15", "benchmarking (RFC 2544)"),
	refuse("198.51.100.0/24", "documentation, TEST-NET-2 (RFC 5737)"),
	refuse("203.0.113.0/24", "documentation, TEST-NET-3 (RFC 5737)"),
	refuse("240.0.0.0/4", "reserved (RFC 1112), incl. limited broadcast 255.255.255.255/32 (RFC 919)"),
	// IANA IPv4 Multicast Address Space Registry.
	refuse("224.0.0.0/4", "multicast (RFC 5771)"),

	// IANA IPv6 Special-Purpose Address Registry.
	refuse("::1/128", "loopback (RFC 4291)"),
	refuse("::/128", "unspecified (RFC 4291)"),
	refuse("64:ff9b:1::/48", "local-use IPv4/IPv6 translation (RFC 8215)"),
	refuse("100::/64", "discard-only (RFC 6666)"),
	refuse("100:0:0:1::/64", "dummy IPv6 prefix (RFC 9780)"),
	// Teredo 2001::/32 (RFC 4380) hides an IPv4 address; benchmarking 2001:2::/48 (RFC 5180);
	// deprecated ORCHID 2001:10::/28 (RFC 4843).
	refuse("2001::/23", "IETF protocol assignments (RFC 2928), incl. Teredo and benchmarking"),
	refuse("2001:db8::/32", "documentation (RFC 3849)"),
	refuse("3fff::/20", "documentation (RFC 9637)"),
	refuse("5f00::/16", "segment routing SIDs (RFC 9602)"),
	refuse("fc00::/7", "unique-local (RFC 4193), incl. AWS's metadata fd00:ec2::254"),
	refuse("fe80::/10", "link-local unicast (RFC 4291)"),
	// IANA IPv6 Address Space Registry: outside 2000::/3 (global unicast) everything is
	// reserved by the IETF, unique-local, link-local or multicast. The special-purpose entries
	// above inside this space are listed for the log's sake; these cover the rest.
	refuse("::/8", "reserved by IETF (RFC 4291), incl. IPv4-compatible ::/96 and SIIT ::ffff:0:0/96 (RFC 7915)"),
	refuse("100::/8", "reserved by IETF (RFC 4291)"),
	refuse("200::/7", "reserved by IETF (RFC 4048)"),
	refuse("400::/6", "reserved by IETF (RFC 4291)"),
	refuse("800::/5", "reserved by IETF (RFC 4291)"),
	refuse("1000::/4", "reserved by IETF (RFC 4291)"),
	refuse("4000::/3", "reserved by IETF (RFC 4291)"),
	refuse("6000::/3", "reserved by IETF (RFC 4291)"),
	refuse("8000::/3", "reserved by IETF (RFC 4291)"),
	refuse("a000::/3", "reserved by IETF (RFC 4291)"),
	refuse("c000::/3", "reserved by IETF (RFC 4291)"),
	refuse("e000::/4", "reserved by IETF (RFC 4291)"),
	refuse("f000::/5", "reserved by IETF (RFC 4291)"),
	refuse("f800::/6", "reserved by IETF (RFC 4291)"),
	refuse("fe00::/9", "reserved by IETF (RFC 4291)"),
	refuse("fec0::/10", "deprecated site-local (RFC 3879)"),
	refuse("ff00::/8", "multicast (RFC 4291)"),
}

// IPv6 forms that embed an IPv4 address, judged by that address.
var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96") // IPv4/IPv6 translation (RFC 6052): the last 32 bits
	sixToFour   = netip.MustParsePrefix("2002::/16")    // 6to4 (RFC 3056): bits 16 to 48
)

// isPublicAddr reports whether a is globally reachable: whether the proxy may connect to it
// when AllowPrivateNetworks is off.
func isPublicAddr(a netip.Addr) bool {
	_, refused := refusedRange(a)
	return !refused
}

// refusedRange returns why a is not globally reachable: its range and the registry's name
// for it, with the embedded IPv4 address for NAT64 and 6to4 forms. refused is false for a
// globally reachable address.
func refusedRange(a netip.Addr) (why string, refused bool) {
	if !a.IsValid() {
		return "not an IP address", true
	}
	a = a.WithZone("").Unmap() // a zoned address never matches a prefix
	if a.Is6() {
		b := a.As16()
		var v4 netip.Addr
		switch {
		case nat64Prefix.Contains(a):
			v4 = netip.AddrFrom4([4]byte(b[12:16]))
		case sixToFour.Contains(a):
			v4 = netip.AddrFrom4([4]byte(b[2:6]))
		}
		if v4.IsValid() {
			if why, refused := refusedRange(v4); refused {
				return "an IPv6 form of " + v4.String() + ", " + why, true
			}
			return "", false
		}
	}
	for _, rr := range refusedRanges {
		if rr.prefix.Contains(a) {
			return rr.prefix.String() + ", " + rr.name, true
		}
	}
	// A backstop, should the table ever miss what the standard library knows.
	if !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() {
		return "not global unicast", true
	}
	return "", false
}
