"""Fixtures for end-to-end tests: one private Postfix per session, test milters.

* ``postfix_session``: the session's PostfixInstance (127.0.0.1 and, where
  the host has it, ::1; one port), started once (~0.3 s), stopped at the end.
* ``postfix``: that instance reset to the defaults before each test: no
  milter, empty mynetworks, no SASL users, no extra main.cf settings. A test
  then reconfigures it with ``postfix.reload(milter=..., main_cf={...})``.
  A reload takes ~0.1 s, and ``reset()`` is free when nothing changed.
* ``echo_milter``: the echo test milter for the session, on a unix socket:
  over loopback TCP, Postfix and libmilter lose ~90 ms per message to Nagle
  and delayed ACKs around end-of-message; over a unix socket it takes ~2 ms.
* ``echo_postfix``: ``postfix`` wired to ``echo_milter`` (and nothing else).

Every fixture here skips with a reason when /usr/sbin/postfix is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from mta.echo import EchoMilter, start_echo_milter
from mta.loopback import ipv6_loopback_available
from mta.milterprocess import MilterSocket
from mta.postfix import (
    NOT_INSTALLED,
    PostfixInstance,
    make_public_dir,
    postfix_available,
)


@pytest.fixture(scope="session")
def postfix_session() -> Iterator[PostfixInstance]:
    if not postfix_available():
        pytest.skip(NOT_INSTALLED)
    with PostfixInstance(ipv6=ipv6_loopback_available()) as instance:
        yield instance


@pytest.fixture
def postfix(postfix_session: PostfixInstance) -> PostfixInstance:
    """The session's Postfix with default settings (see the module docstring)."""
    postfix_session.reset()
    return postfix_session


@pytest.fixture(scope="session")
def echo_milter() -> Iterator[EchoMilter]:
    if not postfix_available():
        pytest.skip(NOT_INSTALLED)
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
