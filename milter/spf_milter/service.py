"""The running milter's shared state: one configuration snapshot at a time.

make_settings() wires a configuration to the runtime: the DNS lookup on the
shared cache, counted by the metrics, into one ``Settings`` snapshot. A
reload builds a whole new Settings and swaps one reference; a connection
keeps the snapshot it started with, so nothing changes under a transaction.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from spf_milter.config import ConfigError, Configuration, DnsConfig, load_all
from spf_milter.dnsclient.cache import DnsCache
from spf_milter.dnsclient.resolver import DnsLookup
from spf_milter.eventloop import EventLoop
from spf_milter.metrics import Metrics
from spf_milter.runner import CheckRunner
from spf_milter.settings import Settings
from spf_milter.spf import Limits, Lookup

log = logging.getLogger(__name__)

T = TypeVar("T")


def make_settings(
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
    return Settings(
        config=daemon,
        policy=configuration.policy,
        lookup=lookup,
        limits=Limits(time_limit=daemon.dns.time_limit),
        # With it the runner answers warm checks at once and prefetches cold
        # ones (runner.py): prefetching needs a cache that shares queries.
        cached_lookup=cached_lookup,
    )


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


class Session(Protocol):
    """One MTA connection, as Traffic sees it."""

    @property
    def in_transaction(self) -> bool:
        """Tell whether a message is between MAIL FROM and its end."""
        ...


class Traffic:
    """The MTA's callbacks in progress and its sessions, for a stop to wait on.

    A stop first closes the listener; then it waits until no callback runs
    and no session is inside a transaction, so that every message the MTA
    is passing through the milter is answered to its end rather than cut
    off (the MTA would apply its milter_default_action to it).
    """

    def __init__(self) -> None:
        # A plain lock: every callback takes it twice, and a stop is rare.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._running = 0
        self._stopping = False  # someone waits in wait_idle(): wake it
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()

    def opened(self, session: T) -> T:
        """Count ``session`` until it is garbage; return it."""
        with self._lock:
            self._sessions.add(session)  # type: ignore[arg-type]
        return session

    def call(self, callback: Callable[..., T], *args: object) -> T:
        """Run one callback of the MTA's, counted as in progress."""
        lock = self._lock
        with lock:
            self._running += 1
        try:
            return callback(*args)
        finally:
            with lock:
                self._running -= 1
                if self._stopping:
                    self._changed.notify_all()

    def transactions(self) -> int:
        """Return how many sessions are inside a transaction."""
        with self._lock:
            return self._transactions()

    def wait_idle(self, limit: float) -> bool:
        """Wait until nothing is in progress, at most ``limit`` seconds."""
        with self._lock:
            self._stopping = True
            return self._changed.wait_for(
                lambda: self._running == 0 and self._transactions() == 0, limit
            )

    def _transactions(self) -> int:
        return sum(1 for session in self._sessions if session.in_transaction)


class Service:
    """The check runner, the DNS cache and the current Settings, reloadable."""

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
        self.runner = CheckRunner(loop)
        self.cache = cache
        self.metrics = metrics if metrics is not None else Metrics()
        self._settings = settings
        self._noted: set[str] = set()
        self.traffic = Traffic()

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
            settings = make_settings(configuration, cache=cache, metrics=self.metrics)
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
