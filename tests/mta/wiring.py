"""The milter's wiring as README.md documents it, for the MTA fixtures to use.

Users copy the fenced blocks of README.md's "Wiring it into the MTA" section
into their main.cf or sendmail.mc. The fixtures take those same lines from
the README, replacing only the socket, so a README change that breaks the
wiring breaks the tests::

    readme_main_cf("unix:/tmp/x/spf-milter.sock")
    # [("smtpd_milters", "unix:/tmp/x/spf-milter.sock"),
    #  ("non_smtpd_milters", "$smtpd_milters"), ...]
    readme_mc_lines("inet:9901@127.0.0.1")
    # "INPUT_MAIL_FILTER(`spf-milter', `S=inet:9901@127.0.0.1, F=T, ...')dnl\\n"

Anything the extraction does not recognise (a missing heading or block, no
``smtpd_milters`` line, not exactly one ``S=``) raises WiringError.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Final

README: Final = Path(__file__).resolve().parents[2] / "README.md"
SECTION: Final = "## Wiring it into the MTA"
POSTFIX_HEADING: Final = "### Postfix"
SENDMAIL_HEADING: Final = "### Sendmail"
FENCE: Final = "```"
SOCKET_PARAMETER: Final = "smtpd_milters"
# INPUT_MAIL_FILTER's S= equate ends at the next comma or closing quote.
SENDMAIL_SOCKET: Final = re.compile(r"\bS=([^,']*)")
# postconf(5): "name = value"; the name is letters, digits and underscores.
MAIN_CF_LINE: Final = re.compile(r"(?P<name>[A-Za-z0-9_]+)[ \t]*=[ \t]*(?P<value>.*)")


class WiringError(Exception):
    """README.md's wiring section is not in the shape the fixtures rely on."""


@functools.cache
def _readme_text(path: Path) -> str:
    return path.read_text()


def code_block(heading: str, readme: Path = README) -> str:
    """Return the first fenced block under ``heading`` in the wiring section."""
    text = _readme_text(readme)
    section = _after(text, SECTION, "\n## ")
    part = _after(section, heading, "\n### ")
    start = part.find(FENCE)
    if start < 0:
        raise WiringError(f"{readme}: no code block under {heading!r}")
    opening_end = part.index("\n", start) + 1
    end = part.find("\n" + FENCE, opening_end - 1)
    if end < 0:
        raise WiringError(f"{readme}: unterminated code block under {heading!r}")
    return part[opening_end : end + 1]


def _after(text: str, heading: str, next_heading: str) -> str:
    """Return what follows the line ``heading`` up to ``next_heading``."""
    found = re.search(rf"^{re.escape(heading)}[ \t]*$", text, re.MULTILINE)
    if found is None:
        raise WiringError(f"{README}: no heading {heading!r}")
    rest = text[found.end() :]
    end = rest.find(next_heading)
    return rest if end < 0 else rest[:end]


def parse_main_cf(text: str) -> list[tuple[str, str]]:
    """Read main.cf text as Postfix does (postconf(5)), in order.

    A comment is a line whose first non-blank character is ``#``; there are
    no comments at the end of a line: ``a = b  # c`` sets ``a`` to ``b  # c``.
    A line that starts with white space continues the previous one.
    """
    settings: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t":
            if not settings:
                raise WiringError(
                    f"main.cf continuation line with nothing before: {line!r}"
                )
            name, value = settings.pop()
            settings.append((name, f"{value} {line.strip()}".strip()))
            continue
        found = MAIN_CF_LINE.fullmatch(line.rstrip())
        if found is None:
            raise WiringError(f"not a main.cf 'name = value' line: {line!r}")
        settings.append((found["name"], found["value"].strip()))
    return settings


def readme_main_cf(milter: str, readme: Path = README) -> list[tuple[str, str]]:
    """Return README's Postfix settings with ``smtpd_milters`` set to ``milter``."""
    settings = parse_main_cf(code_block(POSTFIX_HEADING, readme))
    names = [name for name, _ in settings]
    if names.count(SOCKET_PARAMETER) != 1:
        raise WiringError(
            f"{readme}: the Postfix block sets {SOCKET_PARAMETER}"
            f" {names.count(SOCKET_PARAMETER)} times, not once: {names}"
        )
    socket = dict(settings)[SOCKET_PARAMETER]
    if len(socket.replace(",", " ").split()) != 1:
        # Postfix would try each word as a milter ("#", "or", ...): main.cf
        # has no end-of-line comments.
        raise WiringError(
            f"{readme}: {SOCKET_PARAMETER} must name one socket, not {socket!r}"
        )
    return [
        (name, milter if name == SOCKET_PARAMETER else value)
        for name, value in settings
    ]


def readme_mc_lines(milter: str, readme: Path = README) -> str:
    """Return README's sendmail.mc lines with the ``S=`` socket set to ``milter``.

    ``milter`` is libmilter's form: ``inet:PORT@HOST`` or ``unix:/path``.
    """
    block = code_block(SENDMAIL_HEADING, readme)
    sockets = SENDMAIL_SOCKET.findall(block)
    if len(sockets) != 1 or "INPUT_MAIL_FILTER(" not in block:
        raise WiringError(
            f"{readme}: the Sendmail block needs one INPUT_MAIL_FILTER with"
            f" one S= socket, found {sockets}"
        )
    if any(char in milter for char in ",'`"):
        raise WiringError(f"milter socket {milter!r} would break the m4 quoting")
    return SENDMAIL_SOCKET.sub(lambda _: f"S={milter}", block)
