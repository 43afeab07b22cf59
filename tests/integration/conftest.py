"""Fixtures for end-to-end tests: one private Postfix and one private Sendmail
per session, test milters.

* ``postfix_session``: the session's PostfixInstance (127.0.0.1 and, where
  the host has it, ::1; one port), started once (~0.3 s), stopped at the end.
* ``postfix``: that instance reset to the defaults before each test: no
  milter, empty mynetworks, no SASL users, no extra main.cf settings. A test
  then reconfigures it with ``postfix.reload(milter=..., main_cf={...})``.
  A reload takes ~0.1 s, and ``reset()`` is free when nothing changed.
* ``sendmail_dist``: Sendmail's binaries and cf tree, fetched with
  ``apt-get download`` once per session (and cached under /tmp).
* ``sendmail_session``, ``sendmail``: the same two for a SendmailInstance
  (start ~0.1 s; a changed configuration is a restart, ~0.1 s).
* ``mta_session``: parametrized, ``postfix`` then ``sendmail``: each
  session instance in turn, as the common protocol ``mta.common.Mta``.
* ``echo_milter``: the echo test milter for the session, on a unix socket:
  over loopback TCP, Postfix and libmilter lose ~90 ms per message to Nagle
  and delayed ACKs around end-of-message; over a unix socket it takes ~2 ms.
* ``echo_postfix``: ``postfix`` wired to ``echo_milter`` (and nothing else).

The Postfix fixtures skip with a reason when /usr/sbin/postfix is missing,
the Sendmail ones when Sendmail cannot be set up (no package registry, a
library missing); under CI (``CI`` set) that is a failure instead, so CI
never passes without having run them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import NoReturn

import pytest

from mta.common import Mta
from mta.echo import EchoMilter, start_echo_milter
from mta.loopback import ipv6_loopback_available
from mta.milterprocess import MilterSocket
from mta.postfix import (
    NOT_INSTALLED,
    PostfixInstance,
    make_public_dir,
    postfix_available,
)
from mta.sendmail import SendmailInstance
from mta.sendmaildist import SendmailDist, SendmailUnavailable, fetch_sendmail

# Select one MTA's runs with -k postfix or -k sendmail (the parameter ids).
MTAS = [pytest.param("postfix", marks=pytest.mark.postfix), "sendmail"]


def unavailable(reason: str) -> NoReturn:
    """Skip, or under CI fail: CI must run every MTA's tests."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: these tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postfix_session() -> Iterator[PostfixInstance]:
    if not postfix_available():
        unavailable(NOT_INSTALLED)
    with PostfixInstance(ipv6=ipv6_loopback_available()) as instance:
        yield instance


@pytest.fixture
def postfix(postfix_session: PostfixInstance) -> PostfixInstance:
    """The session's Postfix with default settings (see the module docstring)."""
    postfix_session.reset()
    return postfix_session


@pytest.fixture(scope="session")
def sendmail_dist() -> SendmailDist:
    try:
        return fetch_sendmail()
    except SendmailUnavailable as error:
        unavailable(f"Sendmail cannot be set up: {error}")


@pytest.fixture(scope="session")
def sendmail_session(sendmail_dist: SendmailDist) -> Iterator[SendmailInstance]:
    with SendmailInstance(sendmail_dist, ipv6=ipv6_loopback_available()) as instance:
        yield instance


@pytest.fixture
def sendmail(sendmail_session: SendmailInstance) -> SendmailInstance:
    """The session's Sendmail with default settings: no milter, no AUTH."""
    sendmail_session.reset()
    return sendmail_session


@pytest.fixture(params=MTAS)
def mta_session(request: pytest.FixtureRequest) -> Mta:
    """Each MTA's session instance in turn, configured as the last test left it."""
    instance: Mta = request.getfixturevalue(f"{request.param}_session")
    return instance


@pytest.fixture(scope="session")
def echo_milter() -> Iterator[EchoMilter]:
    work_dir = make_public_dir("spf-milter-echo-")
    try:
        milter = start_echo_milter(MilterSocket.unix(work_dir / "echo.sock"), work_dir)
        yield milter
        milter.process.kill()  # M1: SIGTERM would take ~6 s
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


@pytest.fixture
def echo_postfix(
    postfix_session: PostfixInstance, echo_milter: EchoMilter
) -> PostfixInstance:
    """The session's Postfix with the echo milter as its only non-default."""
    postfix_session.reset(milter=echo_milter.socket.postfix)
    return postfix_session
