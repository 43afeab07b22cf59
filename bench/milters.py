"""Start the two milters under test with equivalent configurations.

Both only tag: every SPF result of both identities is accepted and the
message gets its Authentication-Results field; nothing is rejected or
deferred. Both listen on the same kind of socket, run unprivileged (ours
as nobody, pyspf-milter as its own user), log nothing per message (ours
at warning, pyspf-milter at debugLevel 0), check every client, loopback
included (ours: trusted_networks [], pyspf-milter: an unused address as
skip_addresses and InternalHosts), ask the same DNS server (ours names
it, pyspf-milter reads /etc/resolv.conf, which the namespace points at
it), and have the same check time limit (ours dns.time_limit,
pyspf-milter Lookup_Time).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.testhelpers import Endpoint

START_TIMEOUT: Final = 15.0
STOP_GRACE: Final = 1.0  # libmilter lingers ~6 s after SIGTERM: then SIGKILL
INCUMBENT: Final = "/usr/bin/pyspf-milter"
INCUMBENT_USER: Final = "pyspf-milter"
AUTHSERV_ID: Final = "mx.bench.example"
UNUSED: Final = "198.18.255.254"  # RFC 2544 benchmarking range, never a client

OURS_POLICY: Final = """\
# Tag only: accept every result (the built-in default rejects a MAIL FROM fail).
default:
  mailfrom:
    fail: accept
"""


@dataclass(slots=True)
class Milter:
    """A running milter: its name, socket, process and log."""

    name: str
    endpoint: Endpoint
    process: subprocess.Popen[bytes]
    log_path: Path
    adds_result: bool = True  # False: a null milter, no Authentication-Results

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a short grace (nothing is measured then)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_GRACE * 5)

    def log_tail(self, lines: int = 20) -> str:
        text = (
            self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        )
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listen_endpoint(work: Path, name: str, kind: str) -> tuple[Endpoint, str]:
    """Return the endpoint and libmilter's spelling of it."""
    if kind == "unix":
        path = work / f"{name}.sock"
        return Endpoint(path=str(path)), f"unix:{path}"
    port = _free_port()
    return Endpoint(host="127.0.0.1", port=port), f"inet:{port}@127.0.0.1"


def _ours_config(spec: str, time_limit: float, nameserver: str) -> str:
    mode = 'socket_mode: "0666"\n' if spec.startswith("unix:") else ""
    return (
        f"socket: {spec}\n{mode}user: nobody\ngroup: nogroup\n"
        f"authserv_id: {AUTHSERV_ID}\npolicy: policy.yaml\npolicy_dir: policy.d\n"
        "trusted_networks: []\n"
        f'dns:\n  nameservers: ["{nameserver}"]\n  time_limit: {time_limit:g}\n'
        "log:\n  level: warning\n"
    )


def start_ours(
    work: Path,
    *,
    kind: str = "unix",
    time_limit: float = 20,
    nameserver: str = "127.0.0.1",
    source: Path | None = None,
) -> Milter:
    """Start ``spf-milter run`` (from ``source``'s milter/ if given)."""
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    (work / "policy.d").mkdir(exist_ok=True)
    (work / "policy.yaml").write_text(OURS_POLICY)
    endpoint, spec = listen_endpoint(work, "ours", kind)
    config = work / f"ours-{kind}.yaml"
    config.write_text(_ours_config(spec, time_limit, nameserver))
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source / "milter")
    name = "ours"
    command = [sys.executable, "-m", "spf_milter", "run", "--config", str(config)]
    return launch(name, endpoint, command, work / f"{name}-{kind}.log", env)


def _incumbent_config(pid_file: Path, spec: str, time_limit: float) -> str:
    return (
        "debugLevel = 0\nTestOnly = 1\n"
        "HELO_reject = False\nMail_From_reject = False\n"
        "PermError_reject = False\nTempError_Defer = False\n"
        f"Header_Type = AR\nAuthserv_Id = {AUTHSERV_ID}\n"
        f"Lookup_Time = {int(time_limit)}\n"
        f"Socket = {spec}\nPidFile = {pid_file}\n"
        f"UserID = {INCUMBENT_USER}\nUMask = 0\n"
        # Check every client, loopback too (the Postfix run comes from
        # 127.0.0.1), as ours does with trusted_networks: []. Neither can be
        # empty: an empty InternalHosts stops it at start, an empty
        # skip_addresses fails every check (TypeError, so 451 4.3.0). Both
        # name an unused benchmark address instead.
        f"skip_addresses = {UNUSED}/32\nInternalHosts = {UNUSED}\n"
    )


def start_incumbent(
    work: Path, *, kind: str = "unix", time_limit: float = 20
) -> Milter:
    """Start Debian's pyspf-milter in the foreground with its own config."""
    if not Path(INCUMBENT).exists():
        raise RuntimeError(
            f"{INCUMBENT} is missing: apt-get install -y --no-install-recommends"
            " pyspf-milter (then make sure it is not enabled as a service)"
        )
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    shutil.chown(work, user=INCUMBENT_USER)  # it creates its socket after setuid
    endpoint, spec = listen_endpoint(work, "theirs", kind)
    config = work / f"pyspf-milter-{kind}.conf"
    pid_file = work / f"pyspf-milter-{kind}.pid"
    pid_file.unlink(missing_ok=True)  # a killed pyspf-milter leaves it behind
    config.write_text(_incumbent_config(pid_file, spec, time_limit))
    command = ["/usr/bin/python3", INCUMBENT, str(config)]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    log = work / f"pyspf-milter-{kind}.log"
    return launch("pyspf-milter", endpoint, command, log, env)


def launch(
    name: str,
    endpoint: Endpoint,
    command: list[str],
    log: Path,
    env: dict[str, str],
    *,
    adds_result: bool = True,
) -> Milter:
    """Start ``command`` and wait until it listens on ``endpoint``."""
    if endpoint.path:
        Path(endpoint.path).unlink(missing_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent
        )
    milter = Milter(name, endpoint, process, log, adds_result)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited at start:\n{milter.log_tail()}")
        if _listening(endpoint):
            return milter
        time.sleep(0.05)
    milter.stop()
    raise RuntimeError(f"{name} did not listen within {START_TIMEOUT} s")


def _listening(endpoint: Endpoint) -> bool:
    if endpoint.path:
        return Path(endpoint.path).exists()
    with socket.socket() as probe:
        probe.settimeout(0.5)
        # A probe is a milter connection that never negotiates: both milters
        # drop it at once. Only inet sockets need it.
        return probe.connect_ex((endpoint.host, endpoint.port)) == 0
