package ratelimit

import (
	"net"
	"net/netip"
)

// AddressKey is the key of a client address for the limits counted per
// address: the IPv4 address, or the /64 of an IPv6 address (one host
// gets a whole /64, so counting its addresses one by one would count
// nothing). remoteAddr is "host:port" or a bare host; what does not parse
// is its own key.
func AddressKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
