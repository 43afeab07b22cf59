"""Loopback ports: find a free one, and see whether one listens without connecting."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Final

TCP_LISTEN: Final = "0A"  # include/net/tcp_states.h: TCP_LISTEN = 10
PORT_ATTEMPTS: Final = 50


def is_listening(host: str, port: int) -> bool:
    """Tell whether a TCP socket listens on host:port, without connecting.

    A probe connection would be an SMTP session (and a milter connect) of its
    own, so this reads /proc/net/tcp{,6} instead.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    packed = socket.inet_pton(family, host)
    if family == socket.AF_INET:
        wanted = packed[::-1].hex().upper()
        table = Path("/proc/net/tcp")
    else:
        # Each 32-bit word of the address is printed in host (little-endian) order.
        words = [packed[i : i + 4][::-1] for i in range(0, 16, 4)]
        wanted = b"".join(words).hex().upper()
        table = Path("/proc/net/tcp6")
    local = f"{wanted}:{port:04X}"
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == TCP_LISTEN:
            return True
    return False


def free_port(hosts: tuple[str, ...] = ("127.0.0.1",)) -> int:
    """Return a TCP port that is free on every one of ``hosts`` right now.

    Another process may still take it before it is bound; callers retry.
    """
    for _ in range(PORT_ATTEMPTS):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((hosts[0], 0))
            port: int = probe.getsockname()[1]
        if all(_can_bind(host, port) for host in hosts[1:]):
            return port
    raise OSError(f"no TCP port free on all of {hosts} in {PORT_ATTEMPTS} tries")


def _can_bind(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def ipv6_loopback_available() -> bool:
    """Tell whether ::1 can be bound here (some containers have no IPv6)."""
    if not socket.has_ipv6:
        return False
    return _can_bind("::1", 0)
