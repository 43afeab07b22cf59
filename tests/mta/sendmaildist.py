"""Sendmail's files for the tests: fetched from the Debian archive, never installed.

``fetch_sendmail()`` runs ``apt-get download sendmail-bin sendmail-cf`` and
unpacks both with ``dpkg -x`` (MTA-TESTING.md's recipe). dpkg does not
register them, so nothing conflicts with the installed Postfix and nothing
is configured or started system-wide. The unpacked tree is kept under
/tmp and reused by later test sessions; a session fetches it at most once.
The libraries sendmail links against, and m4, come from scripts/lib.sh's
TEST_PACKAGES; a missing one is reported, never installed from here.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

CACHE_ROOT: Final = Path("/tmp/spf-milter-sendmail-dist")
PACKAGES: Final = ("sendmail-bin", "sendmail-cf")
BINARY: Final = "usr/libexec/sendmail/sendmail"  # S11: setgid mail, not setuid
CF_DIR: Final = "usr/share/sendmail/cf"
TOOLS: Final = ("apt-get", "dpkg", "m4", "unshare", "ldd")
DOWNLOAD_TIMEOUT: Final = 120.0
UPDATE_TIMEOUT: Final = 300.0
COMMAND_TIMEOUT: Final = 30.0
APT_USER: Final = "_apt"


class SendmailUnavailable(Exception):
    """Sendmail cannot be set up here; the message says what is missing."""


@dataclass(frozen=True, slots=True)
class SendmailDist:
    """An unpacked sendmail-bin and sendmail-cf."""

    root: Path

    @property
    def binary(self) -> Path:
        return self.root / BINARY

    @property
    def cf_dir(self) -> Path:
        return self.root / CF_DIR

    @property
    def version(self) -> str:
        """The package version, from the .deb's file name."""
        debs = sorted(self.root.parent.glob("debs/sendmail-bin_*.deb"))
        return debs[0].name.split("_")[1] if debs else "unknown"


def fetch_sendmail(cache_root: Path = CACHE_ROOT) -> SendmailDist:
    """Return Sendmail's unpacked files, downloading them unless cached.

    Raise SendmailUnavailable when a tool or library is missing or the
    package registry cannot be reached.
    """
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise SendmailUnavailable(f"missing tools: {' '.join(missing)}")
    if os.geteuid() != 0:
        raise SendmailUnavailable("sendmail -bD and its namespaces need root")
    # The sandbox needs new UTS and mount namespaces (CAP_SYS_ADMIN).
    _run(["unshare", "--uts", "--mount", "true"], COMMAND_TIMEOUT)
    cache_root = _trusted_dir(cache_root)
    dist = SendmailDist(cache_root / "dist" / "root")
    if not dist.binary.is_file():
        _download_into(cache_root)
    _check_libraries(dist.binary)
    return dist


def _trusted_dir(path: Path) -> Path:
    """Return ``path``, created if needed, if only root can write to it.

    Its binaries run as root, so a cache anyone else could have written is
    not used: a fresh private directory is, for this session.
    """
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o755)
    info = path.lstat()
    if path.is_symlink() or info.st_uid != 0 or info.st_mode & 0o022:
        return Path(tempfile.mkdtemp(prefix="spf-milter-sendmail-dist-"))
    return path


def _download_into(cache_root: Path) -> None:
    """Download and unpack both packages, then publish them by a rename.

    Two test sessions may do this at once; the first rename wins.
    """
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=cache_root))
    try:
        debs = staging / "debs"
        debs.mkdir()
        with contextlib.suppress(KeyError):
            # S10: apt drops to _apt for downloads; root-owned dirs warn.
            shutil.chown(debs, user=pwd.getpwnam(APT_USER).pw_uid)
        _apt_download(debs)
        for deb in sorted(debs.glob("*.deb")):
            _run(["dpkg", "-x", str(deb), str(staging / "root")], COMMAND_TIMEOUT)
        staging.chmod(0o755)
        with contextlib.suppress(OSError):
            staging.rename(cache_root / "dist")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _apt_download(debs: Path) -> None:
    """``apt-get download``; on an empty or stale package list, update it once."""
    command = ["apt-get", "download", "-q", *PACKAGES]
    try:
        _run(command, DOWNLOAD_TIMEOUT, cwd=debs)
    except SendmailUnavailable:
        _run(["apt-get", "update", "-q"], UPDATE_TIMEOUT)
        _run(command, DOWNLOAD_TIMEOUT, cwd=debs)


def _check_libraries(binary: Path) -> None:
    """S11: the unpacked binary needs libwrap0, liblockfile1 and others."""
    done = _run(["ldd", str(binary)], COMMAND_TIMEOUT)
    missing = [line.split()[0] for line in done.splitlines() if "not found" in line]
    if missing:
        raise SendmailUnavailable(
            f"{binary} needs libraries that are not installed: {' '.join(missing)}"
            " (scripts/test installs them: TEST_PACKAGES in scripts/lib.sh)"
        )


def _run(command: list[str], timeout: float, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    except subprocess.TimeoutExpired:
        raise SendmailUnavailable(
            f"{' '.join(command)}: no end in {timeout} s"
        ) from None
    output = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
    if done.returncode != 0:
        raise SendmailUnavailable(
            f"{' '.join(command)} exited with {done.returncode}: {output[-2000:]}"
        )
    return done.stdout.decode("utf-8", "replace")
