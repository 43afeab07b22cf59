"""Read spf-milter.yaml into a DaemonConfig (every key is described in etc/).

load_config() reads the daemon file; load_all() reads it and the policy it
names (spf_milter.config.policyfile). Every problem found, not just the
first, goes into one ConfigError whose lines read
``path:line:col: key.path: message``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from functools import partial
from pathlib import Path
from socket import gethostname
from typing import Final

from spf_milter.config.endpoints import parse_nameserver, parse_port, parse_socket
from spf_milter.config.fields import (
    Fields,
    as_absolute_path,
    as_bool,
    as_choice,
    as_count,
    as_duration,
    as_mode,
    as_name,
    as_network,
    as_path,
    as_seconds,
    as_str,
    as_text,
    as_token,
)
from spf_milter.config.model import (
    Configuration,
    DaemonConfig,
    DnsConfig,
    HeaderConfig,
    LogConfig,
    LogDestination,
    LogLevel,
    MetricsConfig,
    Nameserver,
    OnError,
    Socket,
    SyslogFacility,
    UnixSocket,
)
from spf_milter.config.policyfile import read_policy
from spf_milter.config.problems import ConfigError, ConfigProblem, Context, quote
from spf_milter.config.yamlnodes import Node, read_yaml
from spf_milter.headers import TOKEN
from spf_milter.policy import IPAddress

MAX_TIMEOUT: Final = 60.0  # seconds, one DNS query
MAX_TIME_LIMIT: Final = 300.0  # seconds, one SPF check; RFC 7208 §4.6.4 asks ≥ 20


DEFAULT_SOCKET: Final[Socket] = UnixSocket(Path("/run/spf-milter/spf-milter.sock"))
DEFAULT_TRUSTED_NETWORKS: Final = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
TOP_KEYS: Final = (
    *("authserv_id", "dns", "dry_run", "group", "headers", "log", "metrics"),
    *("on_error",),
    *("policy", "policy_dir", "socket", "socket_group", "socket_mode"),
    *("trust_authenticated", "trusted_networks", "user"),
)
DNS_KEYS: Final = (
    *("cache_error_ttl", "cache_max_bytes", "cache_max_ttl", "cache_min_ttl"),
    *("cache_size",),
    *("nameservers", "time_limit", "timeout"),
)
MAX_CACHE_SIZE: Final = 10_000_000
MAX_CACHE_BYTES: Final = 1 << 40  # a TiB: a typo's bound, not a machine's
MAX_CACHE_TTL: Final = 7 * 86400.0  # a week
MAX_ERROR_TTL: Final = 60.0  # temporary failures are kept only briefly
HEADER_KEYS: Final = (
    "authentication_results",
    "hide_receiver",
    "received_spf",
    "receiver",
)
LOG_KEYS: Final = ("destination", "level", "syslog_facility", "syslog_socket")
METRICS_KEYS: Final = ("address", "enabled", "port")
_DNS: Final = DnsConfig()
_LOG: Final = LogConfig()


def _as_socket(base_dir: Path, node: Node) -> Socket:
    return parse_socket(as_str(node), base_dir)


def _as_nameserver(node: Node) -> Nameserver:
    return parse_nameserver(as_text(node))  # as written, like as_network


def _read_socket(fields: Fields, base_dir: Path) -> Socket:
    socket = fields.get("socket", partial(_as_socket, base_dir), DEFAULT_SOCKET)
    if isinstance(socket, UnixSocket):
        mode = fields.get("socket_mode", as_mode, socket.mode)
        group = fields.get("socket_group", as_name, socket.group)
        return replace(socket, mode=mode, group=group)
    for key in ("socket_mode", "socket_group"):
        if fields.has(key):
            fields.report(
                key, f"applies to unix sockets only, not {socket.connection_string()}"
            )
    return socket


def _read_dns(fields: Fields) -> DnsConfig:
    timeout = fields.get("timeout", partial(as_seconds, MAX_TIMEOUT), _DNS.timeout)
    time_limit = fields.get(
        "time_limit", partial(as_seconds, MAX_TIME_LIMIT), _DNS.time_limit
    )
    if timeout > time_limit and fields.has("timeout"):
        fields.report(
            "timeout", f"{timeout:g} is longer than time_limit ({time_limit:g})"
        )
    nameservers = fields.items("nameservers", _as_nameserver, _DNS.nameservers)
    ttl = partial(as_duration, MAX_CACHE_TTL)
    min_ttl = fields.get("cache_min_ttl", ttl, _DNS.cache_min_ttl)
    max_ttl = fields.get("cache_max_ttl", ttl, _DNS.cache_max_ttl)
    if min_ttl > max_ttl:
        fields.report(
            "cache_min_ttl", f"{min_ttl:g} is above cache_max_ttl ({max_ttl:g})"
        )
    return DnsConfig(
        nameservers=nameservers,
        timeout=min(timeout, time_limit),
        time_limit=time_limit,
        cache_size=fields.get(
            "cache_size", partial(as_count, MAX_CACHE_SIZE), _DNS.cache_size
        ),
        cache_max_bytes=fields.get(
            "cache_max_bytes",
            partial(as_count, MAX_CACHE_BYTES),
            _DNS.cache_max_bytes,
        ),
        cache_min_ttl=min(min_ttl, max_ttl),
        cache_max_ttl=max_ttl,
        cache_error_ttl=fields.get(
            "cache_error_ttl", partial(as_duration, MAX_ERROR_TTL), _DNS.cache_error_ttl
        ),
    )


def _read_headers(fields: Fields, authserv_id: str) -> HeaderConfig:
    return HeaderConfig(
        receiver=fields.get("receiver", as_token, authserv_id),
        received_spf=fields.get("received_spf", as_bool, True),
        authentication_results=fields.get("authentication_results", as_bool, True),
        hide_receiver=fields.get("hide_receiver", as_bool, False),
    )


def _read_log(fields: Fields) -> LogConfig:
    return LogConfig(
        level=fields.get("level", as_choice(LogLevel), _LOG.level),
        destination=fields.get(
            "destination", as_choice(LogDestination), _LOG.destination
        ),
        syslog_facility=fields.get(
            "syslog_facility", as_choice(SyslogFacility), _LOG.syslog_facility
        ),
        syslog_socket=fields.get("syslog_socket", as_absolute_path, _LOG.syslog_socket),
    )


def _read_authserv_id(fields: Fields) -> str:
    """Return authserv_id, by default the host name.

    socket.getfqdn() is not used: it may query DNS and block start-up.
    """
    if fields.has("authserv_id"):
        return fields.get("authserv_id", as_token, "localhost")  # if refused
    hostname = gethostname()
    if TOKEN.fullmatch(hostname):
        return hostname
    message = f"the host name {quote(hostname)} is no authserv_id; set authserv_id"
    fields.context.report(None, message)
    return "localhost"


def read_config(path: Path, problems: list[ConfigProblem]) -> DaemonConfig:
    """Return the daemon configuration, appending every problem to ``problems``."""
    context = Context(path, problems)
    fields = Fields(context, read_yaml(context), TOP_KEYS)
    base_dir = path.parent
    authserv_id = _read_authserv_id(fields)
    return DaemonConfig(
        socket=_read_socket(fields, base_dir),
        user=fields.get("user", as_name, None),
        group=fields.get("group", as_name, None),
        authserv_id=authserv_id,
        policy_file=fields.get(
            "policy", partial(as_path, base_dir), base_dir / "policy.yaml"
        ),
        policy_dir=fields.get(
            "policy_dir", partial(as_path, base_dir), base_dir / "policy.d"
        ),
        dns=_read_dns(fields.sub("dns", DNS_KEYS)),
        trusted_networks=fields.items(
            "trusted_networks", as_network, DEFAULT_TRUSTED_NETWORKS
        ),
        trust_authenticated=fields.get("trust_authenticated", as_bool, True),
        headers=_read_headers(fields.sub("headers", HEADER_KEYS), authserv_id),
        dry_run=fields.get("dry_run", as_bool, False),
        on_error=fields.get("on_error", as_choice(OnError), OnError.TEMPFAIL),
        log=_read_log(fields.sub("log", LOG_KEYS)),
        metrics=_read_metrics(fields.sub("metrics", METRICS_KEYS)),
    )


def _read_metrics(fields: Fields) -> MetricsConfig:
    default = MetricsConfig()
    return MetricsConfig(
        enabled=fields.get("enabled", as_bool, default.enabled),
        address=fields.get("address", _as_address, default.address),
        port=fields.get("port", _as_port, default.port),
    )


def _as_address(node: Node) -> IPAddress:
    text = as_str(node)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{quote(text)} is not an IP address") from None


def _as_port(node: Node) -> int:
    return parse_port(str(as_count(65535, node)))


def load_config(path: Path) -> DaemonConfig:
    """Load spf-milter.yaml; raise ConfigError listing every problem.

    An empty file gives every default. Relative paths in it (policy,
    policy_dir, a unix socket) are taken relative to the file's directory,
    as given: pass an absolute ``path`` if the process changes directory.
    """
    problems: list[ConfigProblem] = []
    config = read_config(path, problems)
    if problems:
        raise ConfigError(problems)
    return config


def load_all(config_path: Path) -> Configuration:
    """Load the daemon configuration and the policy it names.

    Problems in both go into one ConfigError, so ``check-config`` reports
    everything at once.
    """
    problems: list[ConfigProblem] = []
    daemon = read_config(config_path, problems)
    policy = read_policy(daemon.policy_file, daemon.policy_dir, problems)
    if problems:
        raise ConfigError(problems)
    return Configuration(daemon, policy)
