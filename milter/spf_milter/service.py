"""The running milter's shared state: one configuration snapshot at a time.

A ``Settings`` object bundles everything a connection needs that comes from
the configuration: the daemon config, the policy, the DNS lookup and the
engine's limits. A reload builds a whole new Settings and swaps one
reference; a connection keeps the snapshot it started with, so nothing
changes under a transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from spf_milter.config import (
    ConfigError,
    Configuration,
    DaemonConfig,
    DnsConfig,
    load_all,
)
from spf_milter.dnscache import DnsCache
from spf_milter.eventloop import EventLoop
from spf_milter.metrics import Metrics
from spf_milter.policy import Policy
from spf_milter.resolver import DnsLookup
from spf_milter.spf import Limits, Lookup

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Settings:
    """One immutable snapshot of the configuration, ready to use."""

    config: DaemonConfig
    policy: Policy
    lookup: Lookup
    limits: Limits
    cached_lookup: Lookup | None = None  # answers from the cache or NotCached

    @classmethod
    def from_configuration(
        cls,
        configuration: Configuration,
        lookup: Lookup | None = None,
        cache: DnsCache | None = None,
        metrics: Metrics | None = None,
    ) -> Settings:
        """Build the snapshot; ``lookup`` overrides the DNS (tests, benchmarks)."""
        daemon = configuration.daemon
        cached_lookup = None
        if lookup is None:
            dns = daemon.dns
            on_query = metrics.dns_query if metrics is not None else None
            resolver = DnsLookup(
                dns.nameservers, timeout=dns.timeout, cache=cache, on_query=on_query
            )
            lookup, cached_lookup = resolver, resolver.cached_only()
        return cls(
            config=daemon,
            policy=configuration.policy,
            lookup=lookup,
            # Prefetching needs a cache that shares in-flight queries.
            limits=Limits(
                time_limit=daemon.dns.time_limit, prefetch=cached_lookup is not None
            ),
            cached_lookup=cached_lookup,
        )

    @property
    def wait_limit(self) -> float:
        """Seconds a callback waits for a check: its time limit and a margin."""
        return self.limits.time_limit + 5.0


def make_cache(dns: DnsConfig) -> DnsCache | None:
    """Return the DNS cache the configuration asks for (None: no cache)."""
    if dns.cache_size == 0 or dns.cache_max_bytes == 0:
        return None
    return DnsCache(
        max_entries=dns.cache_size,
        max_bytes=dns.cache_max_bytes,
        min_ttl=dns.cache_min_ttl,
        max_ttl=dns.cache_max_ttl,
        error_ttl=dns.cache_error_ttl,
    )


class Service:
    """The event loop, the DNS cache and the current Settings, reloadable."""

    def __init__(
        self,
        config_path: Path,
        settings: Settings,
        loop: EventLoop,
        cache: DnsCache | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config_path = config_path
        self.loop = loop
        self.cache = cache
        self.metrics = metrics if metrics is not None else Metrics()
        self._settings = settings
        self._noted: set[str] = set()

    @property
    def settings(self) -> Settings:
        """Return the current snapshot."""
        return self._settings

    def note_once(self, key: str, message: str) -> None:
        """Log ``message`` at debug the first time only (e.g. a missing macro)."""
        if key not in self._noted:
            self._noted.add(key)
            log.debug("%s", message)

    def reload(self) -> bool:
        """Reread the configuration and policy; keep the old ones on any error."""
        try:
            configuration = load_all(self.config_path)
            cache = self._cache_for(configuration.daemon.dns)
            settings = Settings.from_configuration(
                configuration, cache=cache, metrics=self.metrics
            )
        except ConfigError as error:
            for line in str(error).splitlines():
                log.error("reload: %s", line)
            log.error("reload failed: still using the previous configuration")
            return False
        except ValueError as error:  # e.g. no nameserver configured at all
            log.error(
                "reload failed: %s; still using the previous configuration", error
            )
            return False
        self._settings = settings
        self.cache = cache
        log.info("reloaded %s and the policy", self.config_path)
        return True

    def _cache_for(self, dns: DnsConfig) -> DnsCache | None:
        """Keep the warm cache unless the DNS settings changed."""
        if dns == self._settings.config.dns:
            return self.cache
        return make_cache(dns)
