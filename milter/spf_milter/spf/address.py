"""The client address of a check: the one type, and its one normal form.

RFC 7208 §5 matches an IPv4-mapped IPv6 client (``::ffff:192.0.2.1``) as
the IPv4 address it carries. The milter normalises the client address once,
when the client connects, so that trusted networks, the policy and the
engine all see the same address; check_host() applies the same rule for any
other caller.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def unmapped(ip: IPAddress) -> IPAddress:
    """Return ``ip``, or the IPv4 address an IPv4-mapped IPv6 address carries."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
