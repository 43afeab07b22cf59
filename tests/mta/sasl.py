"""SMTP AUTH users for the private MTAs: Cyrus SASL's sasldb, as both use it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Final

DOMAIN: Final = "test.example"  # the realm of a login without @realm
SASL_MECHANISMS: Final = "PLAIN LOGIN"
SASLPASSWD: Final = "/usr/sbin/saslpasswd2"
COMMAND_TIMEOUT: Final = 30.0


def write_sasldb(conf: Path, sasldb: Path, users: Iterable[tuple[str, str]]) -> bool:
    """Write the SASL application file ``conf`` and a fresh ``sasldb``.

    Return False, and write nothing, when there are no users. A login
    without ``@realm`` gets DOMAIN as its realm. The caller sets the
    database's owner and mode, which differ between the MTAs.
    """
    sasldb.unlink(missing_ok=True)
    users = list(users)
    if not users:
        return False
    conf.parent.mkdir(mode=0o755, exist_ok=True)
    conf.write_text(
        "pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
        f"sasldb_path: {sasldb}\nmech_list: {SASL_MECHANISMS}\n"
    )
    for login, password in users:
        user, _, realm = login.partition("@")
        subprocess.run(
            [SASLPASSWD, "-p", "-c", "-f", str(sasldb), "-u", realm or DOMAIN, user],
            input=password.encode(),
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=True,
        )
    return True
