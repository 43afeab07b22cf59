"""The official openspf test suites (RFC 7208 and RFC 4408), every case its own id.

Each case runs three times: through check_host() on an in-memory
FakeLookup; through ``spf-milter check --json`` talking over UDP/TCP to a
real DNS server on loopback that serves the same scenario; and through the
daemon's way of asking, a cached DnsLookup with prefetching, over that
server, whose result and counts must equal the in-memory ones. The suites live in
tests/openspf (see its README for the format and conventions). The checks of
each run share one memo of parsed records, as the daemon's checks share its
runner's: an answer parsed for one case is the answer for the next.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers.dnsserver import DnsServer
from helpers.dnszone import Zone
from helpers.fakelookup import FakeLookup
from spf_milter import cli
from spf_milter.dnsclient.cache import DnsCache
from spf_milter.dnsclient.resolver import DnsLookup, Nameserver
from spf_milter.runner import Prefetcher
from spf_milter.spf import Limits, Memo
from spf_milter.verify import IdentityCheck, check_mail_from

SUITE_DIR = Path(__file__).resolve().parents[1] / "openspf"
SUITES = {
    "rfc7208": SUITE_DIR / "rfc7208-tests.yml",
    "rfc4408": SUITE_DIR / "rfc4408-tests.yml",
}
# The reference driver's default explanation is the text "DEFAULT".
SUITE_LIMITS = Limits(default_explanation="DEFAULT")
# Through the CLI the default explanation is ours (spf_milter.spf.limits).
CLI_DEFAULT = "SPF: {domain} does not designate {ip} as a permitted sender"


def query_timeout(case: Case) -> float:
    """Seconds per DNS query: short where a TIMEOUT name is meant to expire.

    TIMEOUT names never answer, so a case that expects temperror waits out its
    timeout; every other case gets a long one, so that a busy machine, whose
    loopback server may answer late, cannot turn an answer into a temperror.
    """
    return 0.5 if "temperror" in case.results else 5.0


# RFC 4408 cases whose outcome RFC 7208 changed. The RFC 7208 suite, which
# decides (suite README), has its own version of each.
RFC4408_CHANGED: dict[str, str] = {}


@dataclass(frozen=True)
class Case:
    suite: str
    scenario: str
    name: str
    zonedata: dict[str, Any]
    spec: dict[str, Any]

    @property
    def results(self) -> list[str]:
        wanted = self.spec["result"]
        return wanted if isinstance(wanted, list) else [wanted]


def _cases() -> Iterator[Any]:
    for suite, path in SUITES.items():
        with path.open(encoding="utf-8") as stream:
            for scenario in yaml.safe_load_all(stream):
                if not scenario:
                    continue
                for name, spec in scenario["tests"].items():
                    case = Case(
                        suite,
                        scenario["description"],
                        name,
                        scenario.get("zonedata") or {},
                        spec,
                    )
                    marks = []
                    reason = RFC4408_CHANGED.get(name) if suite == "rfc4408" else None
                    if reason:
                        marks.append(pytest.mark.skip(reason=reason))
                    yield pytest.param(case, id=f"{suite}/{name}", marks=marks)


CASES = list(_cases())


def test_suites_are_complete() -> None:
    counts = {
        suite: sum(1 for p in CASES if p.values[0].suite == suite) for suite in SUITES
    }
    assert counts == {"rfc7208": 203, "rfc4408": 191}


def _sender_and_domain(case: Case) -> tuple[str, str]:
    mailfrom, helo = case.spec["mailfrom"], case.spec["helo"]
    address = mailfrom or f"postmaster@{helo}"
    return address, address.rpartition("@")[2]


@pytest.fixture(scope="module")
def memo() -> Memo:
    return Memo()


def _check(
    case: Case, lookup: Any, memo: Memo, prefetch: Prefetcher | None = None
) -> IdentityCheck:
    return asyncio.run(
        check_mail_from(
            lookup,
            ipaddress.ip_address(case.spec["host"]),
            case.spec["mailfrom"],
            case.spec["helo"],
            limits=SUITE_LIMITS,
            prefetch=prefetch,
            memo=memo,
        )
    )


@pytest.mark.parametrize("case", CASES)
def test_in_memory(case: Case, memo: Memo) -> None:
    checked = _check(case, FakeLookup(Zone.from_openspf(case.zonedata)), memo)
    result = checked.result
    assert str(result.result) in case.results, result
    if "explanation" in case.spec and str(result.result) == "fail":
        assert result.explanation == case.spec["explanation"]


@pytest.fixture(scope="module")
def suite_server() -> Iterator[DnsServer]:
    with DnsServer(Zone()) as server:
        yield server


@pytest.mark.integration
@pytest.mark.parametrize("case", CASES)
def test_over_dns_with_spf_milter_check(
    case: Case, suite_server: DnsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    suite_server.zone = Zone.from_openspf(case.zonedata)
    status = cli.main(
        [
            "check",
            "--ip",
            case.spec["host"],
            "--sender",
            case.spec["mailfrom"],
            "--helo",
            case.spec["helo"],
            "--nameserver",
            f"127.0.0.1:{suite_server.port}",
            "--timeout",
            str(query_timeout(case)),
            "--json",
        ]
    )
    assert status == 0
    output = json.loads(capsys.readouterr().out)
    assert output["result"] in case.results, output
    assert output["identity"] == "mailfrom"
    if "explanation" in case.spec and output["result"] == "fail":
        expected = case.spec["explanation"]
        if expected == "DEFAULT":
            _, domain = _sender_and_domain(case)
            ip = ipaddress.ip_address(case.spec["host"])
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            expected = CLI_DEFAULT.format(domain=domain, ip=ip)
        assert output["explanation"] == expected


@pytest.mark.integration
@pytest.mark.parametrize("case", CASES)
def test_over_dns_cached_with_prefetch(
    case: Case, suite_server: DnsServer, memo: Memo
) -> None:
    zone = Zone.from_openspf(case.zonedata)
    suite_server.zone = zone
    lookup = DnsLookup(
        [Nameserver("127.0.0.1", suite_server.port)],
        timeout=query_timeout(case),
        cache=DnsCache(),
    )
    result = _check(case, lookup, memo, Prefetcher()).result
    expected = _check(case, FakeLookup(zone), Memo.keeping_nothing()).result
    assert str(result.result) in case.results, result
    # The problem of a temperror names the DNS failure, which differs.
    assert dataclasses.replace(result, problem=None) == dataclasses.replace(
        expected, problem=None
    )
