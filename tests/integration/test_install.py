"""The release and the production install, as an administrator meets them.

The standard build front end (``python -m build``) makes an sdist and a
wheel; the wheel, installed into a fresh virtualenv (not editable), runs the
daemon and answers a milter transaction. ``scripts/install`` installs a
release into a scratch root (``--root``), upgrades it without losing an
administrator's edit, and uninstalls it keeping the configuration. Nothing
here touches the real /opt, /etc or /usr.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import helpers.milterdaemon as daemon_module
from helpers.dnsserver import DnsServer
from helpers.dnszone import Zone
from helpers.milterclient import Endpoint, MilterSession
from helpers.milterdaemon import MilterDaemon
from helpers.milterwire import (
    SMFIC_BODYEOB,
    SMFIC_CONNECT,
    SMFIC_DATA,
    SMFIC_HEADER,
    SMFIC_HELO,
    SMFIC_MAIL,
    SMFIC_RCPT,
    Reply,
    connect_data,
)
from spf_milter import __version__

pytestmark = pytest.mark.integration

TOP = Path(__file__).resolve().parents[2]
INSTALL = TOP / "scripts" / "install"
BUILD_TIMEOUT = 900  # seconds: pip may build pymilter from source on a busy machine
SAMPLES = ("spf-milter.yaml", "policy.yaml", "policy.d/example.org.yaml")
ZONE = """\
$TTL 300
$ORIGIN example.net.
@    TXT "v=spf1 ip4:192.0.2.0/24 -all"
"""
BASE_PYTHON = Path(sys.base_prefix) / "bin" / "python3"
NOT_IN_A_RELEASE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)


def _run(*command: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _source_copy(destination: Path) -> Path:
    """Copy the checkout as a clone has it, so the build writes nothing here."""
    shutil.copytree(TOP, destination, ignore=NOT_IN_A_RELEASE)
    return destination


def _build(source: Path, out: Path, *kinds: str) -> None:
    _run(sys.executable, "-m", "build", *kinds, "--outdir", out, source)


@dataclass(frozen=True)
class Release:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    work = tmp_path_factory.mktemp("release")
    _build(_source_copy(work / "source"), work / "dist")  # sdist, then wheel from it
    (sdist,) = (work / "dist").glob("*.tar.gz")
    (wheel,) = (work / "dist").glob("*.whl")
    return Release(sdist, wheel)


def test_the_wheel_carries_the_man_pages_samples_and_unit(release: Release) -> None:
    assert release.wheel.name == f"spf_milter-{__version__}-py3-none-any.whl"
    data = f"spf_milter-{__version__}.data/data/share/"
    with zipfile.ZipFile(release.wheel) as wheel:
        names = set(wheel.namelist())
    expected = {
        "man/man8/spf-milter.8",
        "man/man5/spf-milter.yaml.5",
        "spf-milter/spf-milter.service",
        *(f"spf-milter/etc/{sample}" for sample in SAMPLES),
    }
    assert {data + name for name in expected} <= names
    assert "spf_milter/cli.py" in names


def test_the_sdist_carries_what_the_install_script_needs(release: Release) -> None:
    top = f"spf_milter-{__version__}/"
    with tarfile.open(release.sdist) as sdist:
        names = set(sdist.getnames())
    for name in ("scripts/install", "scripts/lib.sh", "docs/man/spf-milter.8"):
        assert top + name in names
    assert top + "init/spf-milter.service" in names


# -- the wheel in a fresh virtualenv ------------------------------------------------


@pytest.fixture(scope="module")
def venv(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    _run(BASE_PYTHON, "-m", "venv", venv)
    _run(venv / "bin" / "pip", "install", "-q", release.wheel)
    return venv


def test_the_installed_wheel_runs_from_its_virtualenv(venv: Path) -> None:
    version = _run(venv / "bin" / "spf-milter", "--version")
    assert version.strip() == f"spf-milter {__version__}"
    where = _run(
        venv / "bin" / "python", "-c", "import spf_milter; print(spf_milter.__file__)"
    )
    assert Path(where.strip()).is_relative_to(venv)  # not the checkout


def test_the_installed_wheel_accepts_its_shipped_samples(venv: Path) -> None:
    sample = venv / "share" / "spf-milter" / "etc" / "spf-milter.yaml"
    assert "OK" in _run(venv / "bin" / "spf-milter", "check-config", "--config", sample)


async def _one_transaction(port: int) -> list[Reply | None]:
    session = await MilterSession.open(Endpoint(host="127.0.0.1", port=port))
    try:
        await session.negotiate()
        return [
            await session.event(
                SMFIC_CONNECT, connect_data("[192.0.2.10]", "192.0.2.10", 25), []
            ),
            await session.event(SMFIC_HELO, b"mail.example.net\0", []),
            await session.event(SMFIC_MAIL, b"<alice@example.net>\0", []),
            await session.event(SMFIC_RCPT, b"<bob@dest.example>\0", []),
            await session.event(SMFIC_DATA, b"", [("i", "QUEUE1")]),
            await session.event(SMFIC_HEADER, b"Subject\0hello\0", []),
            await session.event(SMFIC_BODYEOB, b"", []),
        ]
    finally:
        session.quit()


def test_the_installed_daemon_answers_a_transaction(
    venv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = str(venv / "bin" / "spf-milter")
    monkeypatch.setattr(daemon_module, "console_script", lambda: script)
    with (
        DnsServer(Zone.from_text(ZONE)) as dns,
        MilterDaemon(
            tmp_path,
            config="authserv_id: mx.test.example\n",
            policy="",
            nameserver=f"127.0.0.1:{dns.port}",
        ) as milter,
    ):
        replies = asyncio.run(_one_transaction(milter.port))
    final = replies[-1]
    assert final is not None
    fields = [change.value for change in final.modifications]
    assert any(value.startswith("mx.test.example;") for value in fields), fields
    assert any("spf=pass" in value for value in fields), fields
    assert f"spf-milter {__version__} listening" in milter.log()


# -- scripts/install into a scratch root ----------------------------------------------

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None,
    reason="scripts/install creates a system user: needs root and useradd",
)


def _scratch_root(root: Path) -> Path:
    """A root with the /etc files useradd edits, on a Postfix host."""
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\npostfix:x:200:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\npostfix:!::\n")
    return root


def _bumped_wheel(work: Path) -> Path:
    """A rebuilt release, newer by its local version, whose samples changed."""
    source = _source_copy(work / "source")
    init = source / "milter" / "spf_milter" / "__init__.py"
    init.write_text(f'"""Upgraded."""\n\n__version__ = "{__version__}+upgrade"\n')
    for sample in ("spf-milter.yaml", "policy.yaml"):
        with (source / "etc" / sample).open("a") as file:
            file.write("# new in the upgrade\n")
    _build(source, work / "dist", "--wheel")
    (wheel,) = (work / "dist").glob("*.whl")
    return wheel


def _installed_version(root: Path) -> str:
    return _run(root / "opt/spf-milter/bin/spf-milter", "--version").split()[1]


def _assert_man_finds(root: Path, page: str, text: str) -> None:
    man_dir = root / "usr/local/share/man"
    located = _run("man", "-M", man_dir, "-w", page).strip()
    assert Path(located).is_relative_to(man_dir)
    shown = subprocess.run(
        ["man", "-M", str(man_dir), "-P", "cat", page],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MANWIDTH": "80"},
        check=True,
    ).stdout
    assert text in shown


@needs_root
def test_install_upgrade_and_uninstall_keep_the_configuration(
    release: Release, tmp_path: Path
) -> None:
    root = _scratch_root(tmp_path / "root")
    with tarfile.open(release.sdist) as sdist:
        sdist.extractall(tmp_path / "unpacked", filter="tar")
    unpacked = tmp_path / "unpacked" / f"spf_milter-{__version__}"
    output = _run(unpacked / "scripts" / "install", "--root", root)

    config = root / "etc" / "spf-milter"
    assert _installed_version(root) == __version__
    for sample in SAMPLES:
        assert (config / sample).is_file(), output
    assert "\nuser: spf-milter\n" in (config / "spf-milter.yaml").read_text()
    # A member of postfix, for socket_group; the unit itself names no group,
    # so it starts on a host without one (a Sendmail host).
    assert "postfix:x:200:spf-milter\n" in (root / "etc" / "group").read_text()
    unit = (root / "etc/systemd/system/spf-milter.service").read_text()
    assert "SupplementaryGroups" not in unit
    checked = _run(
        root / "opt/spf-milter/bin/spf-milter",
        "check-config",
        "--config",
        config / "spf-milter.yaml",
    )
    assert "OK" in checked
    users = (root / "etc" / "passwd").read_text()
    assert "\nspf-milter:x:" in users
    assert ":/usr/sbin/nologin\n" in users.split("\nspf-milter:")[1]
    unit = root / "etc/systemd/system/spf-milter.service"
    assert unit.read_text() == (TOP / "init" / "spf-milter.service").read_text()
    wanted = root / "etc/systemd/system/multi-user.target.wants/spf-milter.service"
    if shutil.which("systemctl"):
        assert wanted.is_symlink()
    if shutil.which("man"):
        _assert_man_finds(root, "spf-milter", "check-config")
        _assert_man_finds(root, "spf-milter.yaml", "trusted_networks")

    # The administrator edits one file; an upgrade changes both samples.
    edited = config / "spf-milter.yaml"
    edited.write_text(edited.read_text().replace("dry_run: false", "dry_run: true"))
    mine = edited.read_text()
    output = _run(INSTALL, "--root", root, _bumped_wheel(tmp_path / "upgrade"))

    assert _installed_version(root) == f"{__version__}+upgrade"
    assert edited.read_text() == mine
    assert "kept your /etc/spf-milter/spf-milter.yaml" in output
    dist = (config / "spf-milter.yaml.dist").read_text()
    assert "# new in the upgrade" in dist
    assert "\ndry_run: false\n" in dist
    assert "# new in the upgrade" in (config / "policy.yaml").read_text()
    assert not (config / "policy.yaml.dist").exists()
    assert (root / "etc" / "passwd").read_text().count("\nspf-milter:") == 1

    output = _run(INSTALL, "--root", root, "--uninstall")
    assert not (root / "opt" / "spf-milter").exists()
    assert not unit.exists()
    assert not wanted.is_symlink()
    assert not (root / "usr/local/share/man/man8/spf-milter.8").exists()
    assert edited.read_text() == mine
    assert (config / "policy.d" / "example.org.yaml").is_file()
    assert "kept /etc/spf-milter" in output


# -- scripts/install at the real paths, in a private mount namespace -------------

# Run by bash in a new mount namespace (unshare --mount: private propagation),
# so nothing it mounts or installs outlives it: /etc is a copy, /opt shows
# only what it held (a local package mirror, say) but no spf-milter, the man
# directory is empty and no running systemd can be reached.
IN_A_NAMESPACE = r"""
set -euo pipefail
scratch=$1 install=$2 release=$3
cp -a /etc "$scratch/etc"
mount --bind "$scratch/etc" /etc
mkdir "$scratch/opt"
for entry in /opt/*; do
    [ -e "$entry" ] && [ "$(basename "$entry")" != spf-milter ] || continue
    target=$scratch/opt/$(basename "$entry")
    if [ -d "$entry" ]; then mkdir "$target"; else touch "$target"; fi
    mount --rbind "$entry" "$target"
done
mount --rbind "$scratch/opt" /opt
mkdir "$scratch/man"
mount --bind "$scratch/man" /usr/local/share/man
[ ! -d /run/systemd ] || mount -t tmpfs tmpfs /run/systemd
"$install" "$release"
echo "== man"
for page in spf-milter spf-milter.yaml; do realpath "$(man -w "$page")"; done
echo "== user"
getent passwd spf-milter
echo "== ExecStartPre, as the unit's user"
command=$(sed -n 's/^ExecStartPre=//p' /etc/systemd/system/spf-milter.service)
setpriv --reuid=spf-milter --regid=spf-milter --clear-groups $command
"""


@needs_root
@pytest.mark.skipif(
    shutil.which("unshare") is None
    or shutil.which("man") is None
    or not Path("/usr/local/share/man").is_dir(),
    reason="needs unshare, man and /usr/local/share/man",
)
def test_install_at_the_real_paths_is_found_by_man_and_the_unit(
    release: Release, tmp_path: Path
) -> None:
    real_paths = [Path("/etc/spf-milter"), Path("/opt/spf-milter")]
    before = [path.exists() for path in real_paths]
    arguments = [str(tmp_path), str(INSTALL), str(release.wheel)]
    done = subprocess.run(
        ["unshare", "--mount", "bash", "-c", IN_A_NAMESPACE, "bash", *arguments],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "could not be enabled" in done.stderr  # systemd is out of reach
    man, user, check = done.stdout.split("== ")[1:]
    assert "/usr/local/share/man/man8/spf-milter.8" in man
    assert "/usr/local/share/man/man5/spf-milter.yaml.5" in man
    assert ":/nonexistent:/usr/sbin/nologin" in user
    assert "/etc/spf-milter/spf-milter.yaml: OK (" in check
    assert [path.exists() for path in real_paths] == before  # nothing leaked
