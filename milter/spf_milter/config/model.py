"""The configuration as frozen values: what spf-milter.yaml and the policy say.

The readers (daemonfile.py, policyfile.py) build these; the rest of the
daemon only reads them. Pure values: importing this module loads no YAML,
DNS, event loop or metrics code. The DNS client takes its servers and its
cache bounds from here (DnsConfig's defaults are the cache's defaults).
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from spf_milter.policy import IPAddress, IPNetwork, Policy

DNS_PORT: Final = 53


class LogLevel(enum.StrEnum):
    """How much the daemon logs."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LogDestination(enum.StrEnum):
    """Where log lines go."""

    STDERR = "stderr"
    SYSLOG = "syslog"


class SyslogFacility(enum.StrEnum):
    """The syslog facilities of syslog(3)."""

    AUTH = "auth"
    AUTHPRIV = "authpriv"
    CRON = "cron"
    DAEMON = "daemon"
    KERN = "kern"
    LPR = "lpr"
    MAIL = "mail"
    NEWS = "news"
    SYSLOG = "syslog"
    USER = "user"
    UUCP = "uucp"
    LOCAL0 = "local0"
    LOCAL1 = "local1"
    LOCAL2 = "local2"
    LOCAL3 = "local3"
    LOCAL4 = "local4"
    LOCAL5 = "local5"
    LOCAL6 = "local6"
    LOCAL7 = "local7"


class OnError(enum.StrEnum):
    """What the MTA hears when the milter itself fails (a bug, not an SPF error)."""

    TEMPFAIL = "tempfail"  # 451 4.3.0: the client retries; no mail is lost
    ACCEPT = "accept"  # let the mail through unchecked


@dataclass(frozen=True, slots=True)
class UnixSocket:
    """A unix-domain socket the milter listens on (``unix:``/``local:``)."""

    path: Path
    mode: int = 0o660
    group: str | None = None

    def connection_string(self) -> str:
        """Return the libmilter socket spec (smfi_setconn)."""
        return f"unix:{self.path}"


@dataclass(frozen=True, slots=True)
class InetSocket:
    """A TCP socket the milter listens on; the address picks inet or inet6."""

    host: IPAddress
    port: int

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not between 1 and 65535")

    def connection_string(self) -> str:
        """Return the libmilter socket spec: ``inet:PORT@HOST``/``inet6:…``."""
        family = "inet6" if self.host.version == 6 else "inet"
        return f"{family}:{self.port}@{self.host}"


Socket = UnixSocket | InetSocket


@dataclass(frozen=True, slots=True)
class Nameserver:
    """A DNS server to send queries to: an IP address and a port."""

    host: str
    port: int = DNS_PORT

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DnsConfig:
    """DNS servers and time limits."""

    nameservers: tuple[Nameserver, ...] = ()  # empty: the system resolver
    timeout: float = 5.0  # one query, seconds
    time_limit: float = 20.0  # one SPF check, seconds (RFC 7208 §4.6.4)
    cache_size: int = 10_000  # answers kept; 0: no cache
    cache_max_bytes: int = 64 * 1024 * 1024  # their estimated memory; 0: no cache
    cache_min_ttl: float = 0.0  # seconds: the floor of an answer's TTL
    cache_max_ttl: float = 3600.0  # seconds: the ceiling
    cache_error_ttl: float = 2.0  # seconds a SERVFAIL/timeout is kept


@dataclass(frozen=True, slots=True)
class HeaderConfig:
    """Which header fields are added, and what they show."""

    receiver: str
    received_spf: bool = True
    authentication_results: bool = True
    hide_receiver: bool = False


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Logging."""

    level: LogLevel = LogLevel.INFO
    destination: LogDestination = LogDestination.STDERR
    syslog_facility: SyslogFacility = SyslogFacility.MAIL
    syslog_socket: Path = Path("/dev/log")


LOOPBACK: Final = ipaddress.IPv4Address("127.0.0.1")


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The optional Prometheus endpoint (spf_milter.metrics)."""

    enabled: bool = False
    address: IPAddress = LOOPBACK
    port: int = 9107


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """Everything in spf-milter.yaml, validated."""

    socket: Socket
    user: str | None
    group: str | None
    authserv_id: str
    policy_file: Path
    policy_dir: Path
    dns: DnsConfig
    trusted_networks: tuple[IPNetwork, ...]
    trust_authenticated: bool
    headers: HeaderConfig
    dry_run: bool
    on_error: OnError
    log: LogConfig
    metrics: MetricsConfig = MetricsConfig()


@dataclass(frozen=True, slots=True)
class Configuration:
    """The daemon configuration and the policy: what a reload swaps at once."""

    daemon: DaemonConfig
    policy: Policy
