"""Domain names and the client's identity as the macros see them (§4.3, §7.3)."""

from __future__ import annotations

import ipaddress
from typing import Final

from spf_milter.spf.macro import MacroContext
from spf_milter.spf.record import is_toplabel

MAX_NAME_LENGTH: Final = 253  # RFC 1035 §2.3.4, in presentation form
MAX_LABEL_LENGTH: Final = 63


def normalise_name(name: str) -> str | None:
    """Return ``name`` ready for check_host(), or None if it is malformed.

    §4.3: a malformed domain (a label longer than 63 characters, an empty
    label, an address literal) or a single-label one gives "none".
    Internationalised names are turned into A-labels (§4.3, RFC 5890).
    ``name`` has no trailing dot and at most MAX_NAME_LENGTH characters
    (Memo.normalise_domain sees to both, before its memo of this).
    """
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = name.split(".")
    if len(labels) < 2 or not is_queryable(name):
        return None
    if not is_toplabel(labels[-1]):
        return None  # "[192.0.2.1]", "192.0.2.1": not domain names
    return name


def is_queryable(name: str) -> bool:
    """Return whether ``name`` (no trailing dot) can exist in the DNS."""
    if not name or len(name) > MAX_NAME_LENGTH:
        return False
    return labels_fit(name)


def labels_fit(name: str) -> bool:
    """Return whether every label of ``name`` has 1 to 63 characters."""
    return all(0 < len(label) <= MAX_LABEL_LENGTH for label in name.split("."))


def query_name(target: str) -> str:
    """Return an expanded target name without its trailing dot."""
    return target[:-1] if target.endswith(".") else target


def split_sender(sender: str) -> tuple[str, str]:
    """Split <sender> into local part and domain (§4.3: no local part: "postmaster")."""
    local, at, domain = sender.rpartition("@")
    if not at:
        return "postmaster", sender
    return local or "postmaster", domain


def client_macros(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    sender: str,
    helo: str,
    receiver: str,
) -> MacroContext:
    """Return the macro values that stay the same for a whole check."""
    local, domain = split_sender(sender)
    if ip.version == 4:
        dotted, version = str(ip), "in-addr"
    else:
        # §7.3: IPv6 "i" is the 32 nibbles, dot-separated, most significant
        # first; upper case as in the examples of §7.4 (DNS ignores case).
        dotted, version = ".".join(ip.exploded.replace(":", "").upper()), "ip6"
    return MacroContext(
        sender=f"{local}@{domain}",
        local_part=local,
        sender_domain=domain,
        domain=domain,
        ip_dotted=dotted,
        ip_version=version,
        helo=helo,
        client_ip=str(ip),
        receiver=receiver,
    )
