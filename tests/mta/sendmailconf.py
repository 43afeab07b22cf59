"""The files of a private Sendmail instance: the .mc and .cf, its sandbox, SASL.

Every setting below answers a pitfall of MTA-TESTING.md (S1-S12) or a need of
the milter's tests; the comments say which. The milter line itself is
README.md's INPUT_MAIL_FILTER, socket aside (mta.wiring), and no macro list
is set: the milter asks for the macros it needs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mta.sasl import DOMAIN, SASL_MECHANISMS, write_sasldb
from mta.wiring import readme_mc_lines

HOSTNAME: Final = "sm.test.example"  # S1: a FQDN, or sendmail sleeps 60 s
DAEMON_NAME: Final = "MTA-test"
SINK_USER: Final = "nobody:nogroup"
M4: Final = "m4"
COMMAND_TIMEOUT: Final = 30.0
M4_EXPECTED_WARNING: Final = (
    "FEATURE(`promiscuous_relay')",
    "Do NOT use it on a server",
)

# The filesink mailer runs as nobody with the envelope as argv: out dir,
# queue id, sender, then each recipient (flag m: one delivery per message).
# Like the Postfix sink, it writes out/<queue id>.env and .eml and
# publishes them by an atomic rename.
SINK_SCRIPT: Final = """\
#!/bin/sh
# sendmail filesink: out/<queue id>.eml, envelope in out/<queue id>.env
umask 022
out=$1 qid=$2 sender=$3
shift 3
printf '%s\\n' "$sender" "$@" > "$out/.$qid.$$.env" || exit 75
cat > "$out/.$qid.$$.eml" || exit 75
mv -f "$out/.$qid.$$.env" "$out/$qid.env" || exit 75
exec mv -f "$out/.$qid.$$.eml" "$out/$qid.eml"
"""

# Run by unshare(1) as `sh -e -c SANDBOX sandbox WORK_DIR SENDMAIL ARGS...`,
# inside fresh UTS and mount namespaces: nothing here is seen outside them.
# Each `exec` keeps the PID, so the PID the test started is sendmail's (S5).
SANDBOX_SCRIPT: Final = f"""\
W=$1; shift
hostname {HOSTNAME}
mount --bind "$W/etc/hosts" /etc/hosts
mount --bind "$W/etc/resolv.conf" /etc/resolv.conf
if [ -d "$W/etc/sasl2" ]; then mount --bind "$W/etc/sasl2" /usr/lib/sasl2; fi
mount --bind /dev "$W/run/olddev"
mount -t tmpfs -o mode=755 sandboxdev /dev
for n in null zero full random urandom tty; do
    touch "/dev/$n"; mount --bind "$W/run/olddev/$n" "/dev/$n"
done
ln -s /proc/self/fd /dev/fd
ln -s "$W/run/log.sock" /dev/log
exec "$@"
"""


@dataclass(frozen=True, slots=True)
class SendmailLayout:
    """Where an instance keeps its files, all under one work dir."""

    work_dir: Path

    @property
    def config_dir(self) -> Path:
        return self.work_dir / "etc"

    @property
    def run_dir(self) -> Path:
        return self.work_dir / "run"

    @property
    def queue_dir(self) -> Path:
        return self.run_dir / "mqueue"

    @property
    def out_dir(self) -> Path:
        return self.work_dir / "out"

    @property
    def mc(self) -> Path:
        return self.config_dir / "test.mc"

    @property
    def cf(self) -> Path:
        return self.config_dir / "test.cf"

    @property
    def sasl_dir(self) -> Path:
        return self.config_dir / "sasl2"

    @property
    def sasldb(self) -> Path:
        return self.config_dir / "sasldb2"

    @property
    def sink(self) -> Path:
        return self.work_dir / "filesink.sh"

    @property
    def log_socket(self) -> Path:
        return self.run_dir / "log.sock"

    @property
    def maillog(self) -> Path:
        return self.work_dir / "maillog"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "sendmail.pid"

    @property
    def output(self) -> Path:
        """Sendmail's own stdout and stderr (errors before syslog works)."""
        return self.work_dir / "sendmail.out"


@dataclass(frozen=True, slots=True)
class SendmailSettings:
    """What a test may change on an instance; a restart applies a new one.

    ``milter`` is libmilter's socket form (``inet:PORT@HOST``, ``unix:/path``),
    the S= of README.md's INPUT_MAIL_FILTER line; empty means no milter.
    """

    milter: str = ""
    sasl_users: tuple[tuple[str, str], ...] = ()


def make_settings(
    *, milter: str = "", sasl_users: Mapping[str, str] | None = None
) -> SendmailSettings:
    return SendmailSettings(
        milter=milter, sasl_users=tuple(sorted((sasl_users or {}).items()))
    )


def create_layout(layout: SendmailLayout) -> None:
    """Create the directories and the files that never change."""
    layout.config_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    layout.run_dir.mkdir(mode=0o755, exist_ok=True)
    (layout.run_dir / "olddev").mkdir(exist_ok=True)
    layout.queue_dir.mkdir(mode=0o700, exist_ok=True)
    layout.out_dir.mkdir(exist_ok=True)
    layout.out_dir.chmod(0o1777)  # written by the sink as nobody
    layout.sink.write_text(SINK_SCRIPT)
    layout.sink.chmod(0o755)
    # S1, S2: the private /etc/hosts and /etc/resolv.conf of the sandbox.
    # The host's resolver may be off loopback; in the sandbox sendmail's PTR
    # queries go to 127.0.0.1:53, where nothing listens on a test machine,
    # so they are refused at once and never leave it.
    (layout.config_dir / "hosts").write_text(
        f"127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost\n"
    )
    (layout.config_dir / "resolv.conf").write_text(
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
    )
    (layout.config_dir / "service.switch").write_text("hosts\tfiles\naliases\tfiles\n")


def render_mc(
    layout: SendmailLayout, settings: SendmailSettings, port: int, ipv6: bool
) -> str:
    """Return the .mc: a daemon on 127.0.0.1 (and ::1) that files every message."""
    if any(char in str(layout.work_dir) for char in "`',$\t\n "):
        raise ValueError(f"{layout.work_dir} would break the m4 quoting of the .mc")
    defines = {
        "confDOMAIN_NAME": HOSTNAME,
        "confDONT_PROBE_INTERFACES": "True",  # S2
        "confSERVICE_SWITCH_FILE": f"{layout.config_dir}/service.switch",  # S2
        "confBIND_OPTS": "-DNSRCH -DEFNAMES",
        "QUEUE_DIR": str(layout.queue_dir),
        "STATUS_FILE": f"{layout.run_dir}/statistics",
        "confPID_FILE": str(layout.pid_file),  # S5: checked against our PID
        "confDEAD_LETTER_DROP": f"{layout.run_dir}/dead.letter",
        "confHELP_FILE": "",
        "ALIAS_FILE": "",
        "confFORWARD_PATH": "",
        "confHOST_STATUS_DIRECTORY": "",
        "confDEF_USER_ID": SINK_USER,
        "confTO_IDENT": "0s",  # no ident (RFC 1413) connection back to the client
        "confLOG_LEVEL": "9",
        "confMILTER_LOG_LEVEL": "6",
        "confDONT_BLAME_SENDMAIL": "TrustStickyBit",  # S4: milter socket under /tmp
        # Deliver before answering the final dot, so the file is there by then.
        "confDELIVERY_MODE": "interactive",
        "confQUEUE_LA": "200",  # S12
        "confREFUSE_LA": "400",  # S12
        **_sasl_defines(settings),
    }
    lines = [
        "divert(0)dnl",
        "OSTYPE(`linux')dnl",
        *(f"define(`{name}', `{value}')dnl" for name, value in defines.items()),
        "FEATURE(`no_default_msa')dnl",  # no second listener on port 587
        "FEATURE(`nocanonify')dnl",  # S2
        "FEATURE(`accept_unresolvable_domains')dnl",  # S2
        "FEATURE(`accept_unqualified_senders')dnl",
        "FEATURE(`promiscuous_relay')dnl",  # relay for every client: SPF is under test
        *_daemon_options(port, ipv6),
        *_sasl_trust(settings),
    ]
    mc = "\n".join(lines) + "\n"
    if settings.milter:
        mc += readme_mc_lines(settings.milter)
    return mc + _mailer(layout)


def _daemon_options(port: int, ipv6: bool) -> list[str]:
    options = [f"Family=inet, Addr=127.0.0.1, Port={port}, Name={DAEMON_NAME}"]
    if ipv6:
        options.append(f"Family=inet6, Addr=::1, Port={port}, Name={DAEMON_NAME}-v6")
    return [f"DAEMON_OPTIONS(`{option}')dnl" for option in options]


def _sasl_defines(settings: SendmailSettings) -> dict[str, str]:
    if not settings.sasl_users:
        return {}
    # AuthRealm: a bare login is looked up in this realm (default: $j).
    return {"confAUTH_MECHANISMS": SASL_MECHANISMS, "confAUTH_REALM": DOMAIN}


def _sasl_trust(settings: SendmailSettings) -> list[str]:
    if not settings.sasl_users:
        return []
    return [f"TRUST_AUTH_MECH(`{SASL_MECHANISMS}')dnl"]


def _mailer(layout: SendmailLayout) -> str:
    """The filesink mailer, and rule 0 sending every user@domain to it.

    Flags: l local, s strip quotes, m many recipients per delivery, n no
    "From " line (S8), P Return-Path (as Postfix's pipe flag R), D F M add
    Date, From and Message-Id when missing, h u keep case, 9 MIME 7->8.
    Arguments: $i the queue id, $g the sender (MAILER-DAEMON for the null
    sender, where Postfix's sink writes an empty line), $u each recipient.
    The two rule lines need a TAB between their sides.
    """
    return (
        "MAILER(`local')dnl\n"
        "MAILER(`smtp')dnl\n"
        "MAILER_DEFINITIONS\n"
        f"Mfilesink, P={layout.sink}, F=lsmDFMPhnu9,"
        " S=EnvFromL/HdrFromL, R=EnvToL/HdrToL, T=DNS/RFC822/X-Unix,"
        f" U={SINK_USER}, A=filesink.sh {layout.out_dir} $i $g $u\n"
        "LOCAL_RULE_0\n"
        "R$* < @ $+ . > $*\t$#filesink $: $1@$2\n"
        "R$* < @ $+ > $*\t$#filesink $: $1@$2\n"
    )


def build_cf(layout: SendmailLayout, cf_dir: Path, mc: str) -> None:
    """Write the .mc and turn it into the .cf with m4 and Sendmail's cf tree."""
    layout.mc.write_text(mc)
    done = subprocess.run(
        [M4, f"-D_CF_DIR_={cf_dir}/", str(cf_dir / "m4" / "cf.m4"), str(layout.mc)],
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    # m4 warns (two lines) about the open relay the tests want.
    errors = [
        line
        for line in done.stderr.decode("utf-8", "replace").splitlines()
        if line.strip() and not any(text in line for text in M4_EXPECTED_WARNING)
    ]
    if done.returncode != 0 or errors or not done.stdout:
        raise ValueError(f"m4 failed on {layout.mc} ({done.returncode}): {errors}")
    layout.cf.write_bytes(done.stdout)


def write_sasl(layout: SendmailLayout, settings: SendmailSettings) -> None:
    """Write Sendmail.conf (mounted on /usr/lib/sasl2) and a fresh sasldb.

    Sendmail runs as root: the sasldb stays root-only (mode 0600).
    """
    conf = layout.sasl_dir / "Sendmail.conf"
    if write_sasldb(conf, layout.sasldb, settings.sasl_users):
        layout.sasldb.chmod(0o600)


def write_config(
    layout: SendmailLayout,
    settings: SendmailSettings,
    cf_dir: Path,
    port: int,
    ipv6: bool,
) -> None:
    """Write every configuration file of the instance for ``settings``."""
    build_cf(layout, cf_dir, render_mc(layout, settings, port, ipv6))
    write_sasl(layout, settings)
