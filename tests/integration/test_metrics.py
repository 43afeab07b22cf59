"""The optional Prometheus endpoint, scraped after real mail through Postfix."""

from __future__ import annotations

import re
import shutil
import urllib.request
from collections.abc import Iterator

import pytest

from helpers.dnsserver import DnsServer
from helpers.dnszone import Zone
from helpers.milterdaemon import MilterDaemon, free_port
from mta.postfix import PostfixInstance, make_public_dir, postfix_available
from mta.smtp import send

pytestmark = [pytest.mark.integration, pytest.mark.postfix]

ZONE = """\
$TTL 300
$ORIGIN example.net.
@      TXT "v=spf1 ip4:192.0.2.0/24 -all"
"""


@pytest.fixture(scope="module")
def metrics_daemon() -> Iterator[tuple[MilterDaemon, int]]:
    if not postfix_available():
        pytest.skip("Postfix is not installed; scripts/test installs it")
    port = free_port()
    work_dir = make_public_dir("spf-milter-metrics-")
    with DnsServer(Zone.from_text(ZONE)) as dns:
        daemon = MilterDaemon(
            work_dir,
            config="authserv_id: mx.test.example\n"
            f"metrics:\n  enabled: true\n  port: {port}\n",
            policy="",
            nameserver=f"127.0.0.1:{dns.port}",
            unix_socket=True,
        )
        try:
            with daemon:
                yield daemon, port
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
        text = page.read().decode()
    samples = {}
    for line in text.splitlines():
        found = re.fullmatch(r"([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)", line)
        if found:
            samples[found.group(1)] = float(found.group(2))
    return samples


def test_metrics_count_checks_decisions_and_dns(
    postfix_session: PostfixInstance, metrics_daemon: tuple[MilterDaemon, int]
) -> None:
    daemon, port = metrics_daemon
    postfix_session.reset(milter=daemon.milter_spec)
    for client in ("192.0.2.10", "192.0.2.11"):
        result = send(
            postfix_session.port,
            client_ip=client,
            helo="h.example.net",
            mail_from="a@example.net",
            rcpt_to=["u@dest.test"],
        )
        assert result.accepted
    refused = send(
        postfix_session.port,
        client_ip="203.0.113.9",
        helo="h.example.net",
        mail_from="a@example.net",
        rcpt_to=["u@dest.test"],
    )
    assert refused.rcpt["u@dest.test"].code == 550
    samples = _scrape(port)
    assert samples['spf_milter_checks_total{identity="mailfrom",result="pass"}'] == 2
    assert samples['spf_milter_checks_total{identity="mailfrom",result="fail"}'] == 1
    assert (
        samples[
            'spf_milter_decisions_total{action="reject",identity="mailfrom",result="fail",rule="default"}'
        ]
        == 1
    )
    assert (
        samples[
            'spf_milter_decisions_total{action="accept",identity="none",result="pass",rule="default"}'
        ]
        == 2
    )
    assert samples["spf_milter_checks_in_flight"] == 0
    assert samples['spf_milter_dns_query_duration_seconds_count{type="TXT"}'] >= 1
    # The same domain three times: answered from the shared cache after the first.
    assert samples["spf_milter_dns_cache_hits_total"] >= 2
    assert samples["spf_milter_dns_cache_entries"] >= 1
