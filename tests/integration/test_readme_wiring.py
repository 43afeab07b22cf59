"""README.md's wiring lines: read as each MTA reads them, and fit to the milter.

The MTA fixtures wire the milter with these lines (mta.wiring), so the
scenario suite (test_mta.py) proves they work; these tests prove that the
fixtures read them as Postfix and m4 do, and that the timeouts they set
leave room for the milter's longest wait.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from mta.postfix import POSTFIX, postfix_available
from mta.postfixconf import Layout, make_settings, render_main_cf
from mta.sendmailconf import SendmailLayout, build_cf, create_layout, render_mc
from mta.sendmailconf import make_settings as make_sendmail_settings
from mta.sendmaildist import SendmailDist
from mta.wiring import (
    POSTFIX_HEADING,
    README,
    SENDMAIL_HEADING,
    WiringError,
    code_block,
    parse_main_cf,
    readme_main_cf,
    readme_mc_lines,
)
from spf_milter.config import DnsConfig
from spf_milter.settings import Settings
from spf_milter.spf import Limits

pytestmark = pytest.mark.integration

POSTCONF = str(Path(POSTFIX).with_name("postconf"))
SOCKET = "unix:/tmp/spf-milter-test/spf-milter.sock"


def _longest_milter_wait() -> float:
    """Seconds the daemon may take to answer RCPT with its default time limit."""
    limits = Limits(time_limit=DnsConfig().time_limit)
    settings = Settings(config=None, policy=None, lookup=None, limits=limits)  # type: ignore[arg-type]
    return settings.wait_limit


def _seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)([smh]?)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"": 1, "s": 1, "m": 60, "h": 3600}[unit]


def _readme_copy(tmp_path: Path, old: str, new: str) -> Path:
    text = README.read_text()
    assert old in text
    copy = tmp_path / "README.md"
    copy.write_text(text.replace(old, new))
    return copy


@pytest.mark.postfix
@pytest.mark.skipif(not postfix_available(), reason="Postfix is not installed")
def test_postfix_reads_the_readme_block_as_the_fixture_does(tmp_path: Path) -> None:
    main_cf = tmp_path / "main.cf"
    main_cf.write_text(code_block(POSTFIX_HEADING))
    (tmp_path / "master.cf").write_text("")
    cool = time.time() - 10  # Postfix pauses to let a fresh main.cf cool down
    os.utime(main_cf, (cool, cool))
    done = subprocess.run(
        [POSTCONF, "-c", str(tmp_path), "-n"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stderr == ""
    postfix = [
        tuple(line.split(" = ", 1))
        for line in done.stdout.splitlines()
        if not line.startswith("config_directory = ")  # what -c says
    ]
    assert sorted(postfix) == sorted(parse_main_cf(code_block(POSTFIX_HEADING)))


def test_the_postfix_fixture_gets_the_readme_lines_and_no_macro_lists() -> None:
    main_cf = render_main_cf(Layout(Path("/tmp/x")), make_settings(milter=SOCKET))
    for name, value in readme_main_cf(SOCKET):
        assert f"\n{name} = {value}\n" in main_cf
    assert f"\nsmtpd_milters = {SOCKET}\n" in main_cf
    assert "_macros" not in main_cf


def test_an_end_of_line_comment_in_main_cf_is_refused(tmp_path: Path) -> None:
    # Postfix would take "#", "or" and the rest as three more milters.
    readme = _readme_copy(
        tmp_path,
        "smtpd_milters = unix:/run/spf-milter/spf-milter.sock\n",
        "smtpd_milters = unix:/run/spf-milter/spf-milter.sock  # or inet\n",
    )
    with pytest.raises(WiringError, match="must name one socket"):
        readme_main_cf(SOCKET, readme)


@pytest.mark.postfix
@pytest.mark.skipif(not postfix_available(), reason="Postfix is not installed")
def test_postfix_waits_longer_than_the_milter() -> None:
    settings = dict(parse_main_cf(code_block(POSTFIX_HEADING)))
    timeout = settings.get("milter_command_timeout")
    if timeout is None:
        done = subprocess.run(
            [POSTCONF, "-d", "-h", "milter_command_timeout"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        timeout = done.stdout.strip()
    assert _seconds(timeout) > _longest_milter_wait()


def test_sendmail_waits_longer_than_the_milter() -> None:
    block = code_block(SENDMAIL_HEADING)
    found = re.search(r"\bT=[^,']*\bR:(\w+)", block)
    # Sendmail's own default R is 10 s: too short (see README.md).
    reply_timeout = _seconds(found.group(1)) if found else 10.0
    assert reply_timeout > _longest_milter_wait()
    assert "F=T" in block  # the milter-down test expects 451 4.3.2


def test_m4_turns_the_readme_line_into_the_filter_of_the_fixtures_cf(
    tmp_path: Path, sendmail_dist: SendmailDist
) -> None:
    milter = "inet:9901@127.0.0.1"
    layout = SendmailLayout(tmp_path)
    create_layout(layout)
    mc = render_mc(layout, make_sendmail_settings(milter=milter), 25, False)
    assert readme_mc_lines(milter) in mc
    assert "MILTER_MACROS" not in mc

    build_cf(layout, sendmail_dist.cf_dir, mc)

    found = re.search(
        r"INPUT_MAIL_FILTER\(`([^']+)', `([^']+)'\)", readme_mc_lines(milter)
    )
    assert found is not None
    name, equates = found.groups()
    cf = layout.cf.read_text()
    assert f"\nX{name}, {equates}\n" in cf
    assert f"\nO InputMailFilters={name}\n" in cf
