"""``spf-milter check``: arguments, output formats, exit statuses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.dnsserver import DnsServer
from helpers.dnszone import Zone
from spf_milter import cli

ZONE = """\
$TTL 300
$ORIGIN example.org.
@        TXT "v=spf1 ip4:192.0.2.0/24 include:_spf.example.org -all"
_spf     TXT "v=spf1 ip6:2001:db8::/32 ~all"
mail     TXT "v=spf1 a -all"
mail     A   198.51.100.25
"""


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServer]:
    with DnsServer(Zone.from_text(ZONE)) as dns:
        yield dns


def _run(
    server: DnsServer, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    status = cli.main(["check", "--nameserver", f"127.0.0.1:{server.port}", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_json_output_is_the_documented_object(
    server: DnsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(
        server,
        capsys,
        "--ip",
        "203.0.113.9",
        "--sender",
        "a@example.org",
        "--helo",
        "mail.example.org",
        "--json",
    )
    assert status == 0
    assert json.loads(out) == {
        "result": "fail",
        "identity": "mailfrom",
        "sender": "a@example.org",
        "domain": "example.org",
        "mechanism": "-all",
        "explanation": (
            "SPF: example.org does not designate 203.0.113.9 as a permitted sender"
        ),
        "problem": None,
        "lookups": 1,
        "void_lookups": 0,
    }


def test_null_sender_checks_postmaster_at_helo(
    server: DnsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(
        server,
        capsys,
        "--ip",
        "198.51.100.25",
        "--sender",
        "",
        "--helo",
        "mail.example.org",
        "--json",
    )
    result = json.loads(out)
    assert status == 0
    assert (result["result"], result["sender"], result["domain"]) == (
        "pass",
        "postmaster@mail.example.org",
        "mail.example.org",
    )


def test_helo_identity(server: DnsServer, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _run(
        server,
        capsys,
        "--ip",
        "192.0.2.1",
        "--sender",
        "a@example.org",
        "--helo",
        "mail.example.org",
        "--identity",
        "helo",
        "--json",
    )
    assert json.loads(out)["identity"] == "helo"
    assert json.loads(out)["result"] == "fail"


def test_human_output_with_trace(
    server: DnsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(
        server,
        capsys,
        "--ip",
        "2001:db8::1",
        "--sender",
        "a@example.org",
        "--helo",
        "mail.example.org",
        "--trace",
    )
    assert status == 0
    assert out.splitlines()[0] == (
        'dns TXT example.org: "v=spf1 ip4:192.0.2.0/24 include:_spf.example.org -all"'
    )
    assert "ip4:192.0.2.0/24: no match" in out
    assert "  ip6:2001:db8::/32: match, pass" in out
    assert "include:_spf.example.org: match, pass" in out
    assert out.rstrip().splitlines()[-3:] == [
        "pass  (mailfrom 'a@example.org')",
        "mechanism:   include:_spf.example.org",
        "lookups:     1 DNS terms, 0 void",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--ip", "not-an-ip", "--sender", "a@b.example", "--helo", "h.example"],
            "not an IP address",
        ),
        (
            ["--ip", "192.0.2.1", "--sender", "a@b.example", "--helo", ""],
            "HELO name must not be empty",
        ),
        (
            [
                "--ip",
                "192.0.2.1",
                "--sender",
                "a@b.example",
                "--helo",
                "h",
                "--nameserver",
                "x",
            ],
            "not an IP address",
        ),
        (["--ip", "192.0.2.1", "--helo", "h.example"], "required: --sender"),
    ],
    ids=["bad-ip", "empty-helo", "bad-nameserver", "missing-sender"],
)
def test_bad_arguments_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["check", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert message in err


def test_console_script_runs(server: DnsServer) -> None:
    script = Path(sys.executable).with_name("spf-milter")
    command = (
        [str(script)]
        if script.exists()
        else [shutil.which("spf-milter") or "spf-milter"]
    )
    done = subprocess.run(
        [
            *command,
            "check",
            "--ip",
            "192.0.2.7",
            "--sender",
            "x@example.org",
            "--helo",
            "h.example.org",
            "--nameserver",
            f"127.0.0.1:{server.port}",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == "pass"


def _policy_config(tmp_path: Path, server: DnsServer) -> Path:
    (tmp_path / "spf-milter.yaml").write_text(
        "socket: inet:8894@127.0.0.1\n"
        "authserv_id: mx.test.example\n"
        "headers:\n  hide_receiver: true\n"
        f'dns:\n  nameservers: ["127.0.0.1:{server.port}"]\n'
    )
    (tmp_path / "policy.yaml").write_text(
        "domains:\n  strict.example:\n    mailfrom:\n      softfail: reject\n"
    )
    return tmp_path / "spf-milter.yaml"


def test_check_with_config_shows_the_daemons_reply_and_headers(
    server: DnsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _policy_config(tmp_path, server)
    status = cli.main(
        [
            "check",
            "--config",
            str(config),
            "--ip",
            "203.0.113.9",
            "--sender",
            "a@example.org",
            "--helo",
            "mail.example.org",
            "--rcpt",
            "b@example.com",
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert status == 0
    assert report["rule"] == "default"
    assert report["action"] == "reject"
    assert report["reply"] == (
        "550 5.7.23 SPF: example.org does not designate 203.0.113.9 as a permitted"
        " sender"
    )
    assert report["mailfrom"]["result"] == "fail"
    assert report["helo"]["result"] == "fail"  # mail.example.org: v=spf1 a -all
    names = [field.split(":", 1)[0] for field in report["headers"]]
    assert names == ["Authentication-Results", "Received-SPF"]
    assert "receiver=" not in report["headers"][1]


@pytest.mark.parametrize("client", ["127.0.0.1", "::ffff:127.0.0.1"])
def test_check_with_config_for_a_trusted_client(
    server: DnsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], client: str
) -> None:
    config = _policy_config(tmp_path, server)
    cli.main(
        [
            "check",
            "--config",
            str(config),
            "--ip",
            client,
            "--sender",
            "a@x.example",
            "--helo",
            "h.example",
            "--rcpt",
            "b@strict.example",
        ]
    )
    assert "trusted_networks: not checked" in capsys.readouterr().out


def test_rcpt_needs_config(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(
            [
                "check",
                "--ip",
                "192.0.2.1",
                "--sender",
                "a@b.example",
                "--helo",
                "h.example",
                "--rcpt",
                "c@d.example",
            ]
        )
    assert exit_info.value.code == 2
    assert "--rcpt needs --config" in capsys.readouterr().err


def test_no_arguments_print_the_usage_and_the_subcommands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = cli.main([])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("usage: spf-milter")
    listed = [line.split()[0] for line in err.splitlines() if line.startswith("    ")]
    assert set(listed) >= {"run", "check-config", "check"}


def _check_with_config(
    server: DnsServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *extra: str,
) -> list[str]:
    config = _policy_config(tmp_path, server)
    status = cli.main(
        [
            "check",
            "--config",
            str(config),
            "--ip",
            "203.0.113.9",
            "--sender",
            "",
            "--helo",
            "nospf.example.org",
            *extra,
        ]
    )
    assert status == 0
    return capsys.readouterr().out.splitlines()


def test_check_with_config_labels_the_helo_line_by_the_helo_name(
    server: DnsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _check_with_config(server, tmp_path, capsys, "--rcpt", "b@example.com")
    assert lines[:2] == [
        "helo      'nospf.example.org': none",
        "mailfrom  'postmaster@nospf.example.org': none",
    ]
    assert all("()" not in line for line in lines)


def test_check_with_config_without_rcpt_says_how_to_see_the_policy(
    server: DnsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _check_with_config(server, tmp_path, capsys)
    assert lines[2] == (
        "policy    not applied: add --rcpt ADDRESS to see the rule, the action"
        " and the SMTP reply"
    )
    assert not any(line.startswith(("action", "reply")) for line in lines)


def test_check_with_config_traces_both_identities(
    server: DnsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _policy_config(tmp_path, server)
    argv = ["check", "--config", str(config), "--ip", "203.0.113.9", "--trace"]
    cli.main([*argv, "--sender", "a@example.org", "--helo", "mail.example.org"])
    out = capsys.readouterr().out
    assert "helo check of 'postmaster@mail.example.org':" in out
    assert "mailfrom check of 'a@example.org':" in out
    # Each trace ends with its result line, before the summary.
    assert out.count("result: fail") == 2


def test_check_with_config_traces_the_null_sender_as_the_helo_check(
    server: DnsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _check_with_config(server, tmp_path, capsys, "--trace")
    assert lines[0] == "helo check of 'postmaster@nospf.example.org':"
    assert "mailfrom check: the null sender's, the HELO check above" in lines
