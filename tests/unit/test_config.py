"""Config: YAML with places, exact error lines, typed values, the samples."""

from __future__ import annotations

import ipaddress
import socket
import textwrap
from pathlib import Path

import pytest

from spf_milter.action import ActionKind, RejectAction, ReplyTemplate
from spf_milter.config import (
    ConfigError,
    DaemonConfig,
    InetSocket,
    LogDestination,
    LogLevel,
    Nameserver,
    OnError,
    SyslogFacility,
    UnixSocket,
    load_all,
    load_config,
    load_policy,
    parse_socket,
)
from spf_milter.policy import DEFAULT_RULE
from spf_milter.service import make_cache, make_settings
from spf_milter.spf import SpfResult

ETC = Path(__file__).resolve().parents[2] / "etc"
CONFIG_KEYS = (
    "authserv_id, dns, dry_run, group, headers, log, metrics, on_error, policy,"
    " policy_dir,"
    " socket, socket_group, socket_mode, trust_authenticated, trusted_networks, user"
)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def policy_error(policy_file: Path, policy_dir: Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_policy(policy_file, policy_dir)
    return str(info.value)


# --- exact messages for the daemon configuration ----------------------------

CONFIG_ERRORS = [
    pytest.param(
        "sokcet: unix:/tmp/s\n",
        "1:1: unknown key 'sokcet'; did you mean 'socket'?"
        f" (expected one of {CONFIG_KEYS})",
        id="unknown-key-suggestion",
    ),
    pytest.param(
        "dns:\n  nameserver: []\n",
        "2:3: dns: unknown key 'nameserver'; did you mean 'nameservers'?"
        " (expected one of cache_error_ttl, cache_max_bytes, cache_max_ttl,"
        " cache_min_ttl, cache_size, nameservers, time_limit, timeout)",
        id="nested-unknown-key",
    ),
    pytest.param(
        "dns:\n  cache_size: 1.5\n",
        "2:15: dns.cache_size: expected a whole number from 0 to 10000000, got 1.5",
        id="cache-size-not-whole",
    ),
    pytest.param(
        "dns:\n  cache_max_bytes: -1\n",
        "2:20: dns.cache_max_bytes: expected a whole number from 0 to"
        " 1099511627776, got -1",
        id="cache-max-bytes-negative",
    ),
    pytest.param(
        "dns:\n  cache_min_ttl: 100\n  cache_max_ttl: 10\n",
        "2:18: dns.cache_min_ttl: 100 is above cache_max_ttl (10)",
        id="cache-ttl-floor-above-ceiling",
    ),
    pytest.param(
        "trusted_networks: 127.0.0.1\n",
        "1:19: trusted_networks: expected a list, got a string",
        id="wrong-type-list",
    ),
    pytest.param(
        "trusted_networks:\n",
        "1:18: trusted_networks: expected a list, got an empty value"
        " (write [] for an empty list)",
        id="empty-list-must-be-explicit",
    ),
    pytest.param(
        'dry_run: "yes"\n',
        "1:10: dry_run: expected true or false, got a string",
        id="wrong-type-bool",
    ),
    pytest.param(
        "headers: [received_spf]\n",
        "1:10: headers: expected a mapping, got a list",
        id="wrong-type-mapping",
    ),
    pytest.param(
        "dns:\n  timeout: five\n",
        "2:12: dns.timeout: expected a number, got a string",
        id="wrong-type-number",
    ),
    pytest.param(
        "dns:\n  timeout: 0\n",
        "2:12: dns.timeout: expected seconds above 0 and at most 60, got 0",
        id="timeout-range",
    ),
    pytest.param(
        "dns:\n  timeout: 30\n",
        "2:12: dns.timeout: 30 is longer than time_limit (20)",
        id="timeout-over-time-limit",
    ),
    pytest.param(
        "dry_run: false\ndry_run: true\n",
        "2:1: duplicate key 'dry_run' (first at line 1, column 1)",
        id="duplicate-key",
    ),
    pytest.param(
        "trusted_networks:\n  - 127.0.0.0/8\n  - 10.0.0.0/33\n",
        "3:5: trusted_networks[1]: '10.0.0.0/33' is not an IPv4 or IPv6 network"
        " (e.g. 192.0.2.0/24, 2001:db8::/32, 192.0.2.7)",
        id="bad-network",
    ),
    pytest.param(
        "socket: inet:8894\n",
        "1:9: socket: 'inet:8894' is not a milter socket (expected unix:/path,"
        " inet:PORT@HOST or inet6:PORT@HOST, e.g. inet:8894@127.0.0.1)",
        id="socket-without-host",
    ),
    pytest.param(
        "socket: inet:127.0.0.1:8894\n",
        "1:9: socket: 'inet:127.0.0.1:8894' is not a milter socket (expected"
        " unix:/path, inet:PORT@HOST or inet6:PORT@HOST, e.g. inet:8894@127.0.0.1)",
        id="socket-postfix-syntax",
    ),
    pytest.param(
        "socket: inet:70000@127.0.0.1\n",
        "1:9: socket: port '70000' is not a number from 1 to 65535",
        id="socket-port-range",
    ),
    pytest.param(
        "socket: inet6:8894@127.0.0.1\n",
        "1:9: socket: '127.0.0.1' is not an IPv6 address",
        id="socket-family-mismatch",
    ),
    pytest.param(
        "socket: inet:8894@localhost\n",
        "1:9: socket: 'localhost' is not an IPv4 address",
        id="socket-host-name",
    ),
    pytest.param(
        "socket: inet:8894@127.0.0.1\nsocket_mode: '0600'\n",
        "2:14: socket_mode: applies to unix sockets only, not inet:8894@127.0.0.1",
        id="socket-mode-on-inet",
    ),
    pytest.param(
        "socket_mode: '0999'\n",
        "1:14: socket_mode: '0999' is not an octal file mode such as \"0660\"",
        id="socket-mode-not-octal",
    ),
    pytest.param(
        "dns:\n  nameservers: [192.0.2.53, 'ns.example:53']\n",
        "2:29: dns.nameservers[1]: nameserver 'ns.example:53': 'ns.example' is"
        " not an IP address",
        id="nameserver-not-address",
    ),
    pytest.param(
        "user: 'root user'\n",
        "1:7: user: 'root user' is not a user or group name",
        id="bad-user-name",
    ),
    pytest.param(
        "authserv_id: 'mx (primary)'\n",
        "1:14: authserv_id: 'mx (primary)' is not a host name or RFC 8601 authserv-id",
        id="bad-authserv-id",
    ),
    pytest.param(
        "log:\n  level: verbose\n",
        "2:10: log.level: unknown value 'verbose'"
        " (expected debug, info, warning, error)",
        id="bad-enum",
    ),
    pytest.param(
        "on_error: reject\n",
        "1:11: on_error: unknown value 'reject' (expected tempfail, accept)",
        id="bad-on-error",
    ),
    pytest.param(
        "log:\n  syslog_socket: dev/log\n",
        "2:18: log.syslog_socket: 'dev/log' is not an absolute path",
        id="relative-syslog-socket",
    ),
    pytest.param(
        "socket: [unclosed\n",
        "2:1: invalid YAML: expected ',' or ']', but got '<stream end>'"
        " (while parsing a flow sequence at line 1, column 9)",
        id="yaml-syntax-error",
    ),
    pytest.param(
        "socket: unix:/a\n  bad: indentation\n",
        "2:6: invalid YAML: mapping values are not allowed here",
        id="yaml-bad-indentation",
    ),
    pytest.param(
        "- socket\n- dns\n",
        "1:1: expected a mapping, got a list",
        id="not-a-mapping",
    ),
    pytest.param(
        "dry_run: !!python/object/apply:os.system ['true']\n",
        "1:10: dry_run: unsupported YAML tag"
        " 'tag:yaml.org,2002:python/object/apply:os.system'",
        id="python-tag-refused",
    ),
    pytest.param(
        "dry_run: \x07\n",
        "1:10: invalid YAML: character U+0007 is not allowed",
        id="control-character",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CONFIG_ERRORS)
def test_config_error_names_file_line_column_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, "spf-milter.yaml", text)
    assert config_error(path) == f"{path}:{expected}"


def test_every_problem_is_reported_in_one_run(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "spf-milter.yaml",
        """
        socket: tcp:8894
        dry_run: maybe
        dns:
          timeout: -1
          nameservers: [300.1.2.3]
        log: {level: loud}
        """,
    )
    lines = config_error(path).splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "socket",
        "dry_run",
        "dns.timeout",
        "dns.nameservers[0]",
        "log.level",
    ]
    assert all(line.startswith(f"{path}:") for line in lines)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    assert config_error(path) == f"{path}: cannot read file: No such file or directory"


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spf-milter.yaml"
    path.write_bytes(b"# ok\nauthserv_id: mx\xe9\n")
    assert config_error(path) == f"{path}:2:16: not UTF-8: byte 0xe9"


def test_empty_file_gives_every_default(tmp_path: Path) -> None:
    path = write(tmp_path, "spf-milter.yaml", "# nothing set\n")
    config = load_config(path)
    assert config == DaemonConfig(
        socket=UnixSocket(Path("/run/spf-milter/spf-milter.sock"), 0o660, None),
        user=None,
        group=None,
        authserv_id=socket.gethostname(),
        policy_file=tmp_path / "policy.yaml",
        policy_dir=tmp_path / "policy.d",
        dns=config.dns.__class__((), 5.0, 20.0),
        trusted_networks=(
            ipaddress.ip_network("127.0.0.0/8"),
            ipaddress.ip_network("::1/128"),
        ),
        trust_authenticated=True,
        headers=config.headers.__class__(socket.gethostname(), True, True, False),
        dry_run=False,
        on_error=OnError.TEMPFAIL,
        log=config.log.__class__(
            LogLevel.INFO, LogDestination.STDERR, SyslogFacility.MAIL, Path("/dev/log")
        ),
    )


def test_values_are_typed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "spf-milter.yaml",
        """
        socket: unix:run/milter.sock
        socket_mode: 0640
        socket_group: postfix
        authserv_id: mx1.example.org
        policy: /etc/spf-milter/policy.yaml
        dns:
          nameservers: [192.0.2.53, "192.0.2.54:5353", "[2001:db8::53]:53", "::1"]
          timeout: 2.5
        trusted_networks: [192.0.2.7/24, 1:2:3:4:5:6:7:8]
        headers: {hide_receiver: yes}
        log: {destination: syslog, syslog_facility: local3}
        """,
    )
    config = load_config(path)
    assert config.socket == UnixSocket(tmp_path / "run/milter.sock", 0o640, "postfix")
    assert config.authserv_id == config.headers.receiver == "mx1.example.org"
    assert config.policy_file == Path("/etc/spf-milter/policy.yaml")
    assert config.dns.nameservers == (
        Nameserver("192.0.2.53"),
        Nameserver("192.0.2.54", 5353),
        Nameserver("2001:db8::53"),
        Nameserver("::1"),
    )
    assert config.dns.timeout == 2.5
    assert config.trusted_networks == (
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("1:2:3:4:5:6:7:8/128"),
    )
    assert config.headers.hide_receiver
    assert config.log.syslog_facility is SyslogFacility.LOCAL3


@pytest.mark.parametrize(
    ("text", "connection_string"),
    [
        pytest.param("unix:/run/m.sock", "unix:/run/m.sock", id="unix"),
        pytest.param("local:/run/m.sock", "unix:/run/m.sock", id="local"),
        pytest.param("unix:m.sock", "unix:/etc/spf-milter/m.sock", id="relative"),
        pytest.param("inet:8894@127.0.0.1", "inet:8894@127.0.0.1", id="inet"),
        pytest.param("inet6:8894@[::1]", "inet6:8894@::1", id="inet6-brackets"),
        pytest.param("inet6:8894@::1", "inet6:8894@::1", id="inet6"),
    ],
)
def test_socket_connection_string(text: str, connection_string: str) -> None:
    sock = parse_socket(text, Path("/etc/spf-milter"))
    assert sock.connection_string() == connection_string


def test_inet_socket_checks_its_port() -> None:
    with pytest.raises(ValueError, match="between 1 and 65535"):
        InetSocket(ipaddress.ip_address("127.0.0.1"), 0)


# --- exact messages for the policy -------------------------------------------

POLICY_ERRORS = [
    pytest.param(
        """
        domains:
          example.org:
            mailfrom:
              fail: rejct
        """,
        "4:13: domains.\"example.org\".mailfrom.fail: unknown action 'rejct'"
        " (expected accept, reject, defer, quarantine)",
        id="typo-action",
    ),
    pytest.param(
        """
        default:
          mailfrom:
            fial: reject
        """,
        "3:5: default.mailfrom: unknown key 'fial'; did you mean 'fail'? (expected"
        " one of fail, neutral, none, pass, permerror, softfail, temperror)",
        id="unknown-result",
    ),
    pytest.param(
        """
        default:
          mailfrom:
            fail: {action: reject, reply: "550 5.7.23 ${sendr} failed"}
        """,
        "3:35: default.mailfrom.fail.reply: unknown placeholder '${sendr}'"
        " (expected one of client_ip, domain, explanation, helo, identity,"
        " problem, result, sender)",
        id="bad-placeholder",
    ),
    pytest.param(
        """
        default:
          mailfrom:
            fail: {action: reject, reply: "550 5.7.1 costs $5"}
        """,
        "3:35: default.mailfrom.fail.reply: '$' in '$5' does not start a"
        " placeholder such as ${domain} (write $$ for a literal $)",
        id="bad-template-syntax",
    ),
    pytest.param(
        """
        default:
          mailfrom:
            temperror: {action: defer, reply: "550 5.7.24 try later"}
        """,
        "3:39: default.mailfrom.temperror.reply: a defer reply must be 4xx, got 550",
        id="defer-with-5xx",
    ),
    pytest.param(
        """
        default:
          mailfrom:
            fail: {action: reject, reply: "550 4.7.1 no"}
        """,
        "3:35: default.mailfrom.fail.reply: enhanced status code 4.7.1 does not"
        " match reply code 550 (both must start with the same digit)",
        id="status-mismatch",
    ),
    pytest.param(
        """
        default:
          mailfrom:
            fail: {action: accept, reply: "550 5.7.1 no"}
        """,
        "3:35: default.mailfrom.fail.reply: 'reply' does not apply to action 'accept'",
        id="reply-on-accept",
    ),
    pytest.param(
        """
        default:
          mailfrom:
            fail: {reply: "550 5.7.1 no"}
        """,
        "3:11: default.mailfrom.fail: missing key 'action'"
        " (accept, reject, defer or quarantine)",
        id="missing-action",
    ),
    pytest.param(
        """
        default:
          shadow: maybe
        """,
        "2:11: default.shadow: expected true or false, got a string",
        id="wrong-type",
    ),
    pytest.param(
        """
        default:
          mailfrom:
            fail: reject
            fail: accept
        """,
        "4:5: default.mailfrom: duplicate key 'fail' (first at line 3, column 5)",
        id="duplicate-key",
    ),
    pytest.param(
        """
        domains:
          example.org:
            trusted_relays: [192.0.2.25, backup.example.org]
        """,
        "3:34: domains.\"example.org\".trusted_relays[1]: 'backup.example.org' is"
        " not an IPv4 or IPv6 network (e.g. 192.0.2.0/24, 2001:db8::/32, 192.0.2.7)",
        id="bad-network",
    ),
    pytest.param(
        """
        domains:
          exa mple.org: {}
        """,
        "2:3: domains.\"exa mple.org\": not a domain name: label 'exa mple' must be"
        " 1 to 63 letters, digits or hyphens, and not start or end with a hyphen",
        id="bad-domain-key",
    ),
    pytest.param(
        """
        domains:
          example.org: {}
          Example.ORG.: {}
        """,
        "3:3: domains.\"Example.ORG.\": domain 'example.org' is already defined at"
        " {policy}:2:3",
        id="domain-twice-in-file",
    ),
    pytest.param(
        """
        default:
          subdomains: true
        """,
        "2:3: default: unknown key 'subdomains' (expected one of helo, mailfrom,"
        " shadow, trusted_relays)",
        id="subdomains-only-for-domains",
    ),
]


@pytest.mark.parametrize(("text", "expected"), POLICY_ERRORS)
def test_policy_error_names_file_line_column_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, "policy.yaml", text)
    assert policy_error(path) == f"{path}:" + expected.replace("{policy}", str(path))


def test_policy_dir_file_with_bad_name(tmp_path: Path) -> None:
    policy = write(tmp_path, "policy.yaml", "")
    bad = write(tmp_path, "policy.d/not_a domain.yaml", "shadow: true\n")
    assert policy_error(policy, tmp_path / "policy.d") == (
        f"{bad}: file name 'not_a domain.yaml': not a domain name: label"
        " 'not_a domain' must be 1 to 63 letters, digits or hyphens, and not"
        " start or end with a hyphen"
    )


def test_domain_defined_in_file_and_directory_names_both(tmp_path: Path) -> None:
    policy = write(
        tmp_path,
        "policy.yaml",
        """
        domains:
          example.org:
            shadow: true
        """,
    )
    second = write(tmp_path, "policy.d/Example.org.yml", "shadow: false\n")
    assert policy_error(policy, tmp_path / "policy.d") == (
        f"{second}: domain 'example.org' is already defined at {policy}:2:3"
    )


def test_subdomains_true_clashes_with_dot_key(tmp_path: Path) -> None:
    policy = write(tmp_path, "policy.yaml", "domains:\n  .example.org: {}\n")
    second = write(tmp_path, "policy.d/example.org.yaml", "subdomains: true\n")
    assert policy_error(policy, tmp_path / "policy.d") == (
        f"{second}: domain '.example.org' is already defined at {policy}:2:3"
    )


def test_problems_in_policy_dir_files_name_the_file(tmp_path: Path) -> None:
    policy = write(tmp_path, "policy.yaml", "")
    domain = write(tmp_path, "policy.d/example.org.yaml", "mailfrom:\n  fail: rejct\n")
    assert policy_error(policy, tmp_path / "policy.d") == (
        f"{domain}:2:9: mailfrom.fail: unknown action 'rejct'"
        " (expected accept, reject, defer, quarantine)"
    )


def test_policy_dir_skips_backups_and_hidden_files(tmp_path: Path) -> None:
    policy = write(tmp_path, "policy.yaml", "")
    for name in (
        "example.org.yaml~",
        ".#example.org.yaml",
        "a.yaml.dpkg-old",
        "README",
    ):
        write(tmp_path, f"policy.d/{name}", "this: [is not valid\n")
    write(tmp_path, "policy.d/example.net.yaml", "shadow: true\n")
    loaded = load_policy(policy, tmp_path / "policy.d")
    assert list(loaded.domains) == ["example.net"]


def test_missing_policy_dir_is_fine(tmp_path: Path) -> None:
    policy = write(tmp_path, "policy.yaml", "")
    assert load_policy(policy, tmp_path / "policy.d").domains == {}


def test_empty_policy_is_the_builtin_default(tmp_path: Path) -> None:
    loaded = load_policy(write(tmp_path, "policy.yaml", ""), None)
    assert loaded.default == DEFAULT_RULE
    assert loaded.domains == {}


def test_domain_rule_inherits_from_default(tmp_path: Path) -> None:
    policy = write(
        tmp_path,
        "policy.yaml",
        """
        default:
          mailfrom:
            softfail: quarantine
          trusted_relays: [192.0.2.25]
        domains:
          example.org:
            mailfrom:
              permerror: reject
        """,
    )
    rule = load_policy(policy, None).domains["example.org"]
    kinds = {result: rule.mailfrom[result].kind for result in SpfResult}
    assert kinds[SpfResult.FAIL] is ActionKind.REJECT  # built-in default
    assert kinds[SpfResult.SOFTFAIL] is ActionKind.QUARANTINE  # from default:
    assert kinds[SpfResult.PERMERROR] is ActionKind.REJECT  # its own
    assert rule.trusted_relays == (ipaddress.ip_network("192.0.2.25/32"),)
    assert rule.helo == DEFAULT_RULE.helo


def test_bare_action_word_keeps_inherited_reply(tmp_path: Path) -> None:
    policy = write(
        tmp_path,
        "policy.yaml",
        """
        default:
          mailfrom:
            fail: {action: reject, reply: "550 5.7.23 Go away, ${sender}"}
        domains:
          example.org:
            mailfrom: {fail: reject}
        """,
    )
    rule = load_policy(policy, None).domains["example.org"]
    custom = RejectAction(ReplyTemplate.from_text("550 5.7.23 Go away, ${sender}"))
    assert rule.mailfrom[SpfResult.FAIL] == custom


def test_subdomains_true_defines_both_keys(tmp_path: Path) -> None:
    policy = write(tmp_path, "policy.yaml", "")
    write(tmp_path, "policy.d/example.org.yaml", "subdomains: true\nshadow: true\n")
    loaded = load_policy(policy, tmp_path / "policy.d")
    assert sorted(loaded.domains) == [".example.org", "example.org"]
    assert loaded.rule_for("lists.example.org").name == ".example.org"


def test_yaml_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    policy = write(
        tmp_path,
        "policy.yaml",
        """
        default:
          mailfrom: &strict
            fail: reject
            softfail: reject
        domains:
          example.org:
            helo: *strict
            mailfrom:
              <<: *strict
              softfail: accept
        """,
    )
    rule = load_policy(policy, None).domains["example.org"]
    assert rule.helo[SpfResult.SOFTFAIL].kind is ActionKind.REJECT
    assert rule.mailfrom[SpfResult.SOFTFAIL].kind is ActionKind.ACCEPT
    assert rule.mailfrom[SpfResult.FAIL].kind is ActionKind.REJECT


# --- load_all and the shipped samples ----------------------------------------


def test_load_all_merges_problems_of_both_files(tmp_path: Path) -> None:
    config = write(tmp_path, "spf-milter.yaml", "dry_run: 1\n")
    policy = write(tmp_path, "policy.yaml", "default: {shadow: 1}\n")
    domain = write(tmp_path, "policy.d/example.org.yaml", "shadow: 1\n")
    with pytest.raises(ConfigError) as info:
        load_all(config)
    assert str(info.value).splitlines() == [
        f"{config}:1:10: dry_run: expected true or false, got an integer",
        f"{policy}:1:19: default.shadow: expected true or false, got an integer",
        f"{domain}:1:9: shadow: expected true or false, got an integer",
    ]
    assert len(info.value.problems) == 3


def test_shipped_samples_load_cleanly() -> None:
    loaded = load_all(ETC / "spf-milter.yaml")
    assert loaded.daemon.socket == InetSocket(ipaddress.ip_address("127.0.0.1"), 8894)
    assert loaded.daemon.policy_file == ETC / "policy.yaml"
    assert loaded.daemon.user == "nobody"  # scripts/run starts it as root
    assert list(loaded.policy.domains) == ["example.org"]


def test_shipped_policy_spells_out_the_builtin_default() -> None:
    assert load_policy(ETC / "policy.yaml", None).default == DEFAULT_RULE


def test_shipped_config_states_the_builtin_defaults(tmp_path: Path) -> None:
    sample = load_config(ETC / "spf-milter.yaml")
    empty = load_config(write(ETC.parent / tmp_path, "spf-milter.yaml", ""))
    assert sample.dns == empty.dns
    assert sample.headers == empty.headers
    assert sample.log == empty.log
    assert sample.trusted_networks == empty.trusted_networks
    assert (sample.dry_run, sample.on_error, sample.trust_authenticated) == (
        empty.dry_run,
        empty.on_error,
        empty.trust_authenticated,
    )


def test_the_daemon_prefetches_only_with_its_shared_cache() -> None:
    configuration = load_all(ETC / "spf-milter.yaml")
    cache = make_cache(configuration.daemon.dns)
    assert cache is not None  # the sample keeps the default cache
    with_cache = make_settings(configuration, cache=cache)
    # The check runner prefetches with a cached Lookup only (runner.py).
    assert with_cache.cached_lookup is not None
    assert make_settings(configuration, cache=None).cached_lookup is None
