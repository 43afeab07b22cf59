"""The files of a private Postfix instance: main.cf, master.cf, the sink, SASL.

Every setting below answers a pitfall of MTA-TESTING.md (P1-P8) or a need of
the milter's tests; the comments say which. The milter settings themselves
are README.md's main.cf lines, socket aside (mta.wiring).
"""

from __future__ import annotations

import grp
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mta.sasl import DOMAIN, write_sasldb
from mta.wiring import readme_main_cf

MAIL_OWNER: Final = "postfix"
SINK_USER: Final = "nobody"
HOSTNAME: Final = "mta.test.example"
CONFIG_AGE: Final = 10.0  # seconds; see write_config()

# The sink runs as nobody (pipe(8) refuses root). It writes the envelope
# first and publishes the message by an atomic rename, so a poller never
# reads half a file. pipe(8) hands over ${sender} and one argument per
# ${recipient} as argv, never through the shell's parser.
SINK_SCRIPT: Final = """\
#!/bin/sh
# pipe(8) filesink: out/<queue id>.eml, envelope in out/<queue id>.env
umask 022
out=$1 qid=$2 sender=$3
shift 3
printf '%s\\n' "$sender" "$@" > "$out/.$qid.$$.env" || exit 75
cat > "$out/.$qid.$$.eml" || exit 75
mv -f "$out/.$qid.$$.env" "$out/$qid.env" || exit 75
exec mv -f "$out/.$qid.$$.eml" "$out/$qid.eml"
"""

MASTER_SERVICES: Final = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@dataclass(frozen=True, slots=True)
class Layout:
    """Where an instance keeps its files, all under one work dir."""

    work_dir: Path

    @property
    def config_dir(self) -> Path:
        return self.work_dir / "etc"

    @property
    def queue_dir(self) -> Path:
        return self.work_dir / "spool"

    @property
    def data_dir(self) -> Path:
        return self.work_dir / "data"

    @property
    def out_dir(self) -> Path:
        return self.work_dir / "out"

    @property
    def sasl_dir(self) -> Path:
        return self.config_dir / "sasl"

    @property
    def sasldb(self) -> Path:
        return self.config_dir / "sasldb2"

    @property
    def sink(self) -> Path:
        return self.work_dir / "filesink.sh"

    @property
    def maillog(self) -> Path:
        return self.work_dir / "maillog"

    @property
    def master_pid_file(self) -> Path:
        return self.queue_dir / "pid" / "master.pid"


@dataclass(frozen=True, slots=True)
class Settings:
    """What a test may change on an instance; ``reload()`` applies a new one."""

    milter: str = ""
    mynetworks: tuple[str, ...] = ()
    sasl_users: tuple[tuple[str, str], ...] = ()
    main_cf: tuple[tuple[str, str], ...] = ()


def make_settings(
    *,
    milter: str = "",
    mynetworks: Sequence[str] = (),
    sasl_users: Mapping[str, str] | None = None,
    main_cf: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from the mappings tests find convenient."""
    return Settings(
        milter=milter,
        mynetworks=tuple(mynetworks),
        sasl_users=tuple(sorted((sasl_users or {}).items())),
        main_cf=tuple((main_cf or {}).items()),
    )


def create_layout(layout: Layout) -> None:
    """Create the directories with the owners and modes Postfix insists on."""
    for directory in (layout.config_dir, layout.queue_dir, layout.data_dir):
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    layout.out_dir.mkdir(exist_ok=True)
    layout.out_dir.chmod(0o1777)  # written by the sink as nobody
    shutil.chown(layout.data_dir, user=MAIL_OWNER)  # P2
    layout.sink.write_text(SINK_SCRIPT)
    layout.sink.chmod(0o755)


def render_main_cf(layout: Layout, settings: Settings) -> str:
    """Return main.cf for ``settings``; test overrides come last and win."""
    base: dict[str, str] = {
        **_instance_main_cf(layout),
        "inet_interfaces": "loopback-only",
        "inet_protocols": "all",  # P4: XCLIENT with an IPv6 address
        "mydestination": "",
        "mynetworks": " ".join(settings.mynetworks),
        # P3: Postfix must relay for every client, XCLIENT-claimed ones too,
        # because the milter's own trusted-network logic is under test.
        "relay_domains": "static:ALL",
        "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
        "smtpd_authorized_xclient_hosts": "127.0.0.0/8 [::1]/128",
        "smtpd_peername_lookup": "no",  # P5: no PTR query to the system resolver
        "default_transport": "filesink:sink",
        "relay_transport": "filesink:sink",
        "local_transport": "filesink:sink",
        "filesink_destination_recipient_limit": "1000",
        "alias_maps": "",
        "alias_database": "",
        "local_recipient_maps": "",
        # Postfix's default, spelled out: invalid UTF-8 in a command then gets
        # "500 5.5.2 Error: bad UTF-8 syntax" from Postfix itself. With "no",
        # raw 8-bit HELO and MAIL FROM values reach the milter.
        "smtputf8_enable": "yes",
        "biff": "no",
        **_milter_main_cf(settings),
        **_sasl_main_cf(layout, settings),
        **dict(settings.main_cf),
    }
    for name, value in base.items():
        if "\n" in name + value:
            raise ValueError(f"main.cf setting {name!r} = {value!r} spans lines")
    return "".join(f"{name} = {value}\n" for name, value in base.items())


def _milter_main_cf(settings: Settings) -> dict[str, str]:
    """The milter settings exactly as README.md documents them (mta.wiring)."""
    if not settings.milter:
        return {"smtpd_milters": "", "non_smtpd_milters": ""}
    return dict(readme_main_cf(settings.milter))


def _instance_main_cf(layout: Layout) -> dict[str, str]:
    """The settings that make this instance private: its directories and log."""
    return {
        "compatibility_level": "3.6",
        "queue_directory": str(layout.queue_dir),
        "data_directory": str(layout.data_dir),
        "maillog_file": str(layout.maillog),  # P1: no syslogd here
        "maillog_file_prefixes": str(layout.work_dir),
        "syslog_name": f"postfix-{layout.work_dir.name}",
        "myhostname": HOSTNAME,
        "mydomain": DOMAIN,
        "myorigin": "$myhostname",
    }


def _sasl_main_cf(layout: Layout, settings: Settings) -> dict[str, str]:
    if not settings.sasl_users:
        return {}
    return {
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sasl_type": "cyrus",
        "smtpd_sasl_path": "smtpd",
        "cyrus_sasl_config_path": str(layout.sasl_dir),
        "smtpd_sasl_local_domain": DOMAIN,
    }


def render_master_cf(layout: Layout, listeners: Sequence[str]) -> str:
    """Return master.cf with one smtpd per ``host:port`` listener."""
    smtpd = "".join(f"{listen} inet n - n - - smtpd\n" for listen in listeners)
    sink = (
        f"filesink unix - n n - - pipe flags=Rq user={SINK_USER} null_sender="
        f" argv={layout.sink} {layout.out_dir} ${{queue_id}} ${{sender}}"
        " ${recipient}\n"
    )
    return smtpd + MASTER_SERVICES + sink


def write_sasl(layout: Layout, settings: Settings) -> None:
    """Write smtpd.conf and a fresh sasldb with ``settings.sasl_users``.

    smtpd_sasl_local_domain makes a bare login name land in the same realm
    as write_sasldb() gives it.
    """
    conf = layout.sasl_dir / "smtpd.conf"
    if write_sasldb(conf, layout.sasldb, settings.sasl_users):
        # P8: root-owned, readable by smtpd (group postfix).
        os.chown(layout.sasldb, 0, grp.getgrnam(MAIL_OWNER).gr_gid)
        layout.sasldb.chmod(0o640)


def write_config(layout: Layout, settings: Settings, listeners: Sequence[str]) -> None:
    """Write every configuration file of the instance, with a cool mtime.

    Postfix's dict_load_file() will not read a file modified within the last
    second or so ("pausing to let main.cf cool down"): it sleeps 300 ms at a
    time, which cost ~2 s on every start and reload. Backdating the mtime
    avoids that; reload is signalled, never detected from mtimes.
    """
    main_cf = layout.config_dir / "main.cf"
    master_cf = layout.config_dir / "master.cf"
    main_cf.write_text(render_main_cf(layout, settings))
    master_cf.write_text(render_master_cf(layout, listeners))
    write_sasl(layout, settings)
    cool = time.time() - CONFIG_AGE
    for path in (main_cf, master_cf):
        os.utime(path, (cool, cool))
