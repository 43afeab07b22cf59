"""The daemon and check-config as installed console scripts, without an MTA."""

from __future__ import annotations

import grp
import os
import pwd
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from helpers.milterdaemon import MilterDaemon, console_script

pytestmark = pytest.mark.integration


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_check_config_accepts_the_shipped_samples() -> None:
    sample = Path(__file__).resolve().parents[2] / "etc" / "spf-milter.yaml"
    done = _run("check-config", "--config", str(sample))
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout


def test_check_config_names_file_line_and_key_of_each_error(tmp_path: Path) -> None:
    (tmp_path / "spf-milter.yaml").write_text(
        "socket: inet:8894@127.0.0.1\ndry_rn: true\n"
    )
    (tmp_path / "policy.yaml").write_text("default:\n  mailfrom:\n    fail: rejct\n")
    done = _run("check-config", "--config", str(tmp_path / "spf-milter.yaml"))
    assert done.returncode == 78
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith(
        f"{tmp_path}/spf-milter.yaml:2:1: unknown key 'dry_rn'; did you mean 'dry_run'?"
    )
    assert lines[1] == (
        f"{tmp_path}/policy.yaml:3:11: default.mailfrom.fail: unknown action 'rejct'"
        " (expected accept, reject, defer, quarantine)"
    )


def test_run_refuses_an_invalid_configuration(tmp_path: Path) -> None:
    (tmp_path / "spf-milter.yaml").write_text("socket: inet:99999@127.0.0.1\n")
    done = _run("run", "--config", str(tmp_path / "spf-milter.yaml"))
    assert done.returncode == 78
    assert "spf-milter.yaml:1:9: socket:" in done.stderr


def test_unix_socket_gets_its_mode_and_sigterm_stops_cleanly(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    socket_path = tmp_path / "run" / "spf-milter.sock"
    config = tmp_path / "spf-milter.yaml"
    config.write_text(f'socket: unix:{socket_path}\nsocket_mode: "0666"\nuser: root\n')
    (tmp_path / "policy.yaml").write_text("")
    process = subprocess.Popen(
        [console_script(), "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert socket_path.exists()
        assert stat.S_IMODE(socket_path.stat().st_mode) == 0o666
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "SIGTERM: stopping" in output
    assert "stopped" in output


def test_sighup_with_a_broken_policy_keeps_the_old_one(tmp_path: Path) -> None:
    with MilterDaemon(
        tmp_path, config="", policy="", nameserver="127.0.0.1:9"
    ) as daemon:
        daemon.policy_path.write_text("default:\n  mailfrom:\n    fail: rejct\n")
        daemon.expect_log(r"^reload")  # the errors this test provokes
        text = daemon.reload()
        assert "reload failed" in text
        assert "policy.yaml:3:11: default.mailfrom.fail: unknown action 'rejct'" in text
        daemon.policy_path.write_text("default:\n  mailfrom:\n    fail: defer\n")
        assert "reloaded" in daemon.reload()
        assert daemon.process is not None
        assert daemon.process.poll() is None


def _status_ids(pid: int) -> tuple[int, int]:
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["Uid"].split()[1]), int(fields["Gid"].split()[1])


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_root_opens_the_socket_then_drops_to_the_configured_user(
    tmp_path: Path,
) -> None:
    tmp_path.chmod(0o755)
    nobody, nogroup = pwd.getpwnam("nobody"), grp.getgrnam("nogroup")
    daemon = MilterDaemon(
        tmp_path,
        config="user: nobody\ngroup: nogroup\n",
        policy="",
        nameserver="127.0.0.1:9",
        unix_socket=True,
    )
    daemon.rewrite_config("user: nobody\ngroup: nogroup\nsocket_group: nogroup\n")
    with daemon:
        assert daemon.process is not None
        daemon.wait_for_log(lambda text: "running as user nobody" in text)
        assert _status_ids(daemon.process.pid) == (nobody.pw_uid, nogroup.gr_gid)
        info = daemon.socket_path.stat()
        assert (info.st_uid, info.st_gid) == (nobody.pw_uid, nogroup.gr_gid)
        assert stat.S_IMODE(info.st_mode) == 0o666


def test_unknown_user_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "spf-milter.yaml").write_text(
        "socket: inet:8894@127.0.0.1\nuser: no-such-user-here\n"
    )
    (tmp_path / "policy.yaml").write_text("")
    done = _run("run", "--config", str(tmp_path / "spf-milter.yaml"))
    assert done.returncode == 78
    assert "user 'no-such-user-here' does not exist" in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="only root is refused")
def test_root_without_a_user_to_switch_to_is_refused(tmp_path: Path) -> None:
    (tmp_path / "spf-milter.yaml").write_text("socket: inet:8894@127.0.0.1\n")
    (tmp_path / "policy.yaml").write_text("")
    done = _run("run", "--config", str(tmp_path / "spf-milter.yaml"))
    assert done.returncode == 78
    assert "refusing to run as root: set user" in done.stderr
