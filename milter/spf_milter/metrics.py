"""Metrics for operators: an optional Prometheus endpoint.

Off by default. When ``metrics.enabled`` is set, the daemon serves
``/metrics`` on ``metrics.address:metrics.port`` (loopback by default) with:

- ``spf_milter_checks_total{identity, result}``: SPF checks by result;
- ``spf_milter_check_duration_seconds{identity}``: how long checks took;
- ``spf_milter_checks_in_flight``: checks started and not finished;
- ``spf_milter_decisions_total{identity, result, action, rule}``: policy
  decisions per recipient, by the identity that drove them and its result
  (``none`` and the MAIL FROM result when nothing but accept was due), the
  action and the policy rule;
- ``spf_milter_dns_query_duration_seconds{type}``: DNS queries sent (cache
  misses), by record type;
- ``spf_milter_dns_cache_{hits,misses,coalesced}_total`` and
  ``spf_milter_dns_cache_entries``: the shared cache, read at scrape time.

This module is the only one that imports prometheus_client, and only when
metrics are enabled: the package is an optional dependency (the
``metrics`` extra).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from spf_milter.dnsclient.cache import DnsCache

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20)


class Metrics:
    """What the milter reports; this base class reports nothing (metrics off)."""

    # Whether anything is reported: with metrics off, the flow does not
    # work out the labels of what it would report.
    reporting = False

    def check_started(self) -> None:
        """A check was submitted."""

    def check_finished(self, identity: str, result: str, seconds: float) -> None:
        """A check ended with ``result`` after ``seconds``."""

    def check_abandoned(self) -> None:
        """A check was cancelled: its connection ended first."""

    def decision(self, identity: str, result: str, action: str, rule: str) -> None:
        """The policy decided ``action`` for one recipient."""

    def dns_query(self, rdtype: str, seconds: float) -> None:
        """A DNS query was answered (or failed) after ``seconds``."""

    def watch_cache(self, cache: Callable[[], DnsCache | None]) -> None:
        """Report the counters of the DNS cache ``cache()`` returns at scrape time."""

    def stop(self) -> None:
        """Stop serving the endpoint."""


class PrometheusMetrics(Metrics):
    """Metrics kept with prometheus_client and served over HTTP."""

    reporting = True

    def __init__(self, address: str, port: int) -> None:
        # Imported here: prometheus_client is needed only with metrics on.
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            start_http_server,
        )

        self._registry = registry = CollectorRegistry()
        self._checks = Counter(
            "spf_milter_checks",
            "SPF checks",
            ["identity", "result"],
            registry=registry,
        )
        self._duration = Histogram(
            "spf_milter_check_duration_seconds",
            "How long SPF checks took",
            ["identity"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._in_flight = Gauge(
            "spf_milter_checks_in_flight", "SPF checks under way", registry=registry
        )
        self._decisions = Counter(
            "spf_milter_decisions",
            "Policy decisions per recipient",
            ["identity", "result", "action", "rule"],
            registry=registry,
        )
        self._dns = Histogram(
            "spf_milter_dns_query_duration_seconds",
            "DNS queries sent (cache misses)",
            ["type"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._cache_collector = _CacheCollector()
        registry.register(self._cache_collector)
        self._server, _ = start_http_server(port, addr=address, registry=registry)
        log.info("metrics on http://%s:%d/metrics", address, port)

    def check_started(self) -> None:
        self._in_flight.inc()

    def check_finished(self, identity: str, result: str, seconds: float) -> None:
        self._in_flight.dec()
        self._checks.labels(identity, result).inc()
        self._duration.labels(identity).observe(seconds)

    def check_abandoned(self) -> None:
        self._in_flight.dec()

    def watch_cache(self, cache: Callable[[], DnsCache | None]) -> None:
        self._cache_collector.cache = cache

    def decision(self, identity: str, result: str, action: str, rule: str) -> None:
        self._decisions.labels(identity, result, action, rule).inc()

    def dns_query(self, rdtype: str, seconds: float) -> None:
        self._dns.labels(rdtype).observe(seconds)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _CacheCollector:
    """Read the shared DNS cache's counters when Prometheus scrapes."""

    def __init__(self) -> None:
        self.cache: Callable[[], DnsCache | None] = lambda: None

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
        )

        cache = self.cache()
        if cache is None:
            return
        for name, value in (
            ("hits", cache.stats.hits),
            ("misses", cache.stats.misses),
            ("coalesced", cache.stats.coalesced),
        ):
            yield CounterMetricFamily(
                f"spf_milter_dns_cache_{name}", f"DNS cache {name}", value=value
            )
        yield GaugeMetricFamily(
            "spf_milter_dns_cache_entries", "Answers in the DNS cache", value=len(cache)
        )
