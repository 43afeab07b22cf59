"""Answer pyspf's DNS queries from a tests/helpers/dnszone.py Zone, in memory.

pyspf fetches every DNS answer through its module-level ``spf.DNSLookup``
function; its own test suite replaces that function to serve test zones,
and so do the differential test (tests/differential) and the engine
benchmark (bench/engine.py). The function built here answers as pyspf's
dnspython driver would: a list of ``((owner, type), value)`` pairs where TXT
values are sequences of byte strings, MX values ``(preference, exchange)``,
A, AAAA and PTR values strings, with one ``CNAME`` pair per alias followed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import spf

from helpers.dnszone import Mx, Outcome, Rdata, Zone

PyspfAnswer = list[tuple[tuple[str, str], object]]
PyspfLookup = Callable[..., PyspfAnswer]

_ERRORS = {Outcome.TIMEOUT, Outcome.SERVFAIL, Outcome.REFUSED, Outcome.CNAME_LOOP}


def zone_lookup(zone: Zone) -> PyspfLookup:
    """Return a ``spf.DNSLookup`` replacement answering from ``zone``, memoised.

    The memo is keyed by the name as asked (owner names in the answer keep
    its case), so it answers exactly as the zone would, as long as the zone
    does not change.
    """
    memo: dict[tuple[str, str], PyspfAnswer] = {}

    def lookup(
        name: str, qtype: str, strict: object = True, timeout: object = None
    ) -> PyspfAnswer:
        key = (name, qtype)
        answer = memo.get(key)
        if answer is None:
            answer = memo[key] = _answer(zone, name, qtype)
        return answer

    return lookup


def _answer(zone: Zone, name: str, qtype: str) -> PyspfAnswer:
    resolution = zone.resolve(name, qtype)
    if resolution.outcome in _ERRORS:
        # What pyspf's dnspython driver raises on a timeout or SERVFAIL.
        raise spf.TempError(f"DNS {resolution.outcome} for {name}/{qtype}")
    pairs: PyspfAnswer = []
    owner = name
    for target in resolution.cnames:
        pairs.append(((owner, "CNAME"), target))
        owner = target
    pairs.extend(((owner, qtype), _value(rdata)) for rdata in resolution.records)
    return pairs


def _value(rdata: Rdata) -> object:
    match rdata:
        case tuple():
            return rdata  # TXT: the record's character-strings, as bytes
        case Mx(preference, exchange):
            return (preference, exchange)
        case ipaddress.IPv4Address() | ipaddress.IPv6Address():
            return str(rdata)
    return rdata  # PTR: the target name
