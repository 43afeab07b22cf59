"""The with-block lifecycle every process-like test helper shares.

A helper that fails half-way through its start, or a test that fails inside
the block, must not leave a daemon, a thread or a work dir behind: the next
tests would meet it (a port taken, a stale socket, a full /tmp).
"""

from __future__ import annotations

import pytest

from helpers.lifecycle import Managed


class Recorder(Managed):
    """Records the calls; its start fails when told to."""

    def __init__(self, fail_start: bool = False) -> None:
        self.fail_start = fail_start
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")
        if self.fail_start:
            raise RuntimeError("no socket")

    def stop(self) -> None:
        self.calls.append("stop")


def test_the_block_starts_then_stops() -> None:
    with Recorder() as helper:
        assert helper.calls == ["start"]
    assert helper.calls == ["start", "stop"]


def test_a_failed_start_releases_what_it_took_and_raises() -> None:
    helper = Recorder(fail_start=True)
    with pytest.raises(RuntimeError, match="no socket"), helper:
        pytest.fail("the block ran after a failed start")
    assert helper.calls == ["start", "stop"]


def test_a_failing_block_still_stops_and_keeps_its_error() -> None:
    helper = Recorder()
    with pytest.raises(KeyError), helper:
        raise KeyError("in the test")
    assert helper.calls == ["start", "stop"]


def test_close_is_what_the_block_ends_with() -> None:
    class Throwaway(Recorder):
        def close(self) -> None:
            self.calls.append("kill")

    with Throwaway() as helper:
        pass
    assert helper.calls == ["start", "kill"]
