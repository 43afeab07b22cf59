"""Parse the places written in the configuration and on the command line.

Where the milter listens (``unix:/path``, ``inet:PORT@HOST``) and which DNS
servers it asks (``HOST[:PORT]``): text in, a value of
spf_milter.config.model out, or ValueError naming the text.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from spf_milter.config.model import InetSocket, Nameserver, Socket, UnixSocket
from spf_milter.config.problems import quote
from spf_milter.policy import IPAddress

_PORT = re.compile(r"[0-9]{1,5}")


def parse_port(text: str) -> int:
    """Return a TCP/UDP port number from 1 to 65535; raise ValueError."""
    if not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise ValueError(f"port {quote(text)} is not a number from 1 to 65535")
    return int(text)


def _address(text: str, version: int) -> IPAddress:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is None or address.version != version:
        raise ValueError(f"{quote(text)} is not an IPv{version} address")
    return address


def parse_socket(text: str, base_dir: Path) -> Socket:
    """Parse ``unix:/path``, ``local:/path``, ``inet:PORT@HOST``, ``inet6:PORT@HOST``.

    A relative unix socket path is taken relative to ``base_dir``.
    """
    scheme, colon, rest = text.partition(":")
    if scheme in ("unix", "local") and rest:
        return UnixSocket(base_dir / rest)
    port, at, host = rest.partition("@")
    if scheme not in ("inet", "inet6") or not colon or not at:
        raise ValueError(
            f"{quote(text)} is not a milter socket (expected unix:/path,"
            " inet:PORT@HOST or inet6:PORT@HOST, e.g. inet:8894@127.0.0.1)"
        )
    version = 6 if scheme == "inet6" else 4
    host = host.removeprefix("[").removesuffix("]") if version == 6 else host
    return InetSocket(_address(host, version), parse_port(port))


def parse_nameserver(text: str) -> Nameserver:
    """Parse ``HOST[:PORT]`` (``192.0.2.1``, ``::1``, ``[::1]:5353``) into a Nameserver.

    The host must be an IP address: a resolver cannot look up its own server.
    Raise ValueError, naming ``text``, if it is not of that form.
    """
    host, port_text = _split_host_port(text)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"nameserver {text!r}: {host!r} is not an IP address"
        ) from None
    if text.startswith("[") and address.version != 6:
        raise ValueError(f"nameserver {text!r}: brackets are for IPv6 addresses only")
    if port_text is None:
        return Nameserver(str(address))
    if not port_text.isdigit() or not 0 < int(port_text) <= 0xFFFF:
        raise ValueError(f"nameserver {text!r}: port must be a number from 1 to 65535")
    return Nameserver(str(address), int(port_text))


def _split_host_port(text: str) -> tuple[str, str | None]:
    """Split ``text`` into host and port text (None when there is no port)."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"nameserver {text!r}: expected [IPv6] or [IPv6]:PORT")
        return host, rest[1:] if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None  # no colon, or a bare IPv6 address (several colons)
