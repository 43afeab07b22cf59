"""The shared DNS cache: TTLs, negative answers, errors, size, coalescing."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import tracemalloc
from collections.abc import Awaitable, Callable

import pytest

from spf_milter.dnsclient.cache import DnsCache
from spf_milter.spf.lookup import DnsServerFailure, DnsTimeout


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Upstream:
    """A fetch function that counts calls and answers what it is told."""

    def __init__(self, answer: tuple[object, ...] = ("a",), ttl: float = 300.0) -> None:
        self.answer, self.ttl, self.calls = answer, ttl, 0
        self.error: Exception | None = None
        self.gate: asyncio.Event | None = None

    def __call__(self) -> Callable[[], Awaitable[tuple[tuple[object, ...], float]]]:
        async def fetch() -> tuple[tuple[object, ...], float]:
            self.calls += 1
            if self.gate is not None:
                await self.gate.wait()
            if self.error is not None:
                raise self.error
            return self.answer, self.ttl

        return fetch


def _get(cache: DnsCache, upstream: Upstream, key: str = "example.org") -> list[object]:
    return asyncio.run(cache.get(("TXT", key), upstream()))


def test_answers_are_kept_for_their_ttl() -> None:
    clock, upstream = Clock(), Upstream(ttl=300)
    cache = DnsCache(clock=clock)
    assert _get(cache, upstream) == ["a"]
    clock.now += 299
    assert _get(cache, upstream) == ["a"]
    assert upstream.calls == 1
    clock.now += 2
    _get(cache, upstream)
    assert upstream.calls == 2
    assert (cache.stats.hits, cache.stats.misses) == (1, 2)


@pytest.mark.parametrize(
    ("ttl", "kept_for"), [(0, 30), (10, 30), (100, 100), (10_000, 600)]
)
def test_ttl_is_clamped_to_floor_and_ceiling(ttl: float, kept_for: float) -> None:
    clock, upstream = Clock(), Upstream(ttl=ttl)
    cache = DnsCache(clock=clock, min_ttl=30, max_ttl=600)
    _get(cache, upstream)
    clock.now += kept_for - 1
    _get(cache, upstream)
    assert upstream.calls == 1
    clock.now += 2
    _get(cache, upstream)
    assert upstream.calls == 2


def test_zero_ttl_without_a_floor_is_not_kept() -> None:
    upstream = Upstream(ttl=0)
    cache = DnsCache()
    _get(cache, upstream)
    _get(cache, upstream)
    assert upstream.calls == 2


def test_negative_answers_are_kept_like_any_other() -> None:
    clock, upstream = Clock(), Upstream(answer=(), ttl=60)
    cache = DnsCache(clock=clock)
    assert _get(cache, upstream) == []
    assert _get(cache, upstream) == []
    assert upstream.calls == 1


def test_temporary_failures_are_kept_only_briefly() -> None:
    clock, upstream = Clock(), Upstream()
    upstream.error = DnsServerFailure("example.org", "TXT", "SERVFAIL")
    cache = DnsCache(clock=clock, error_ttl=2)
    for _ in range(3):
        with pytest.raises(DnsServerFailure, match="SERVFAIL"):
            _get(cache, upstream)
    assert upstream.calls == 1
    clock.now += 3
    upstream.error = None
    assert _get(cache, upstream) == ["a"]
    assert upstream.calls == 2


def test_least_recently_used_goes_first() -> None:
    upstream = Upstream()
    cache = DnsCache(max_entries=2)
    for name in ("a.example", "b.example"):
        _get(cache, upstream, name)
    _get(cache, upstream, "a.example")  # a is now the most recent
    _get(cache, upstream, "c.example")  # evicts b
    assert len(cache) == 2
    calls = upstream.calls
    _get(cache, upstream, "a.example")
    assert upstream.calls == calls
    _get(cache, upstream, "b.example")
    assert upstream.calls == calls + 1
    assert cache.stats.evictions >= 1


def test_a_burst_of_identical_queries_sends_one() -> None:
    upstream = Upstream()
    cache = DnsCache()

    async def burst() -> list[list[object]]:
        upstream.gate = asyncio.Event()
        waiting = [
            asyncio.ensure_future(cache.get(("TXT", "forged.example"), upstream()))
            for _ in range(100)
        ]
        await asyncio.sleep(0)
        upstream.gate.set()
        return await asyncio.gather(*waiting)

    answers = asyncio.run(burst())
    assert answers == [["a"]] * 100
    assert upstream.calls == 1
    assert cache.stats.coalesced == 99


def test_one_caller_giving_up_does_not_cancel_the_others() -> None:
    upstream = Upstream()
    cache = DnsCache()

    async def scenario() -> list[object]:
        upstream.gate = asyncio.Event()
        first = asyncio.ensure_future(cache.get(("TXT", "x.example"), upstream()))
        second = asyncio.ensure_future(cache.get(("TXT", "x.example"), upstream()))
        await asyncio.sleep(0)
        first.cancel()
        upstream.gate.set()
        return await second

    assert asyncio.run(scenario()) == ["a"]


def test_a_timeout_reaches_every_waiter_and_is_fresh_each_time() -> None:
    upstream = Upstream()
    upstream.error = DnsTimeout("x.example", "TXT", "no answer")
    cache = DnsCache()
    errors = []
    for _ in range(2):
        with pytest.raises(DnsTimeout) as caught:
            _get(cache, upstream, "x.example")
        errors.append(caught.value)
    assert errors[0] is not errors[1]


def test_size_zero_keeps_nothing() -> None:
    upstream = Upstream()
    cache = DnsCache(max_entries=0)
    _get(cache, upstream)
    _get(cache, upstream)
    assert upstream.calls == 2


# -- memory: bounded in bytes, whatever size the answers are -----------------


def _addresses(first: int, count: int) -> tuple[ipaddress.IPv4Address, ...]:
    return tuple(ipaddress.IPv4Address(first + n) for n in range(count))


def test_large_answers_are_bounded_by_bytes_not_by_count() -> None:
    cache = DnsCache(max_entries=10_000, max_bytes=1_000_000)
    for n in range(100):  # 100 answers of 2,000 addresses: about 20 MB kept
        upstream = Upstream(_addresses(n << 16, 2_000))
        assert len(_get(cache, upstream, f"n{n}.example")) == 2_000
        assert cache.bytes <= cache.max_bytes
    assert 0 < len(cache) < 10
    assert cache.stats.evictions == 100 - len(cache)


def test_an_answer_larger_than_a_quarter_of_the_bound_is_not_kept() -> None:
    cache = DnsCache(max_bytes=100_000)
    upstream = Upstream(_addresses(0, 1_000))  # about 100 kB of objects
    assert len(_get(cache, upstream)) == 1_000
    assert len(_get(cache, upstream)) == 1_000
    assert upstream.calls == 2
    assert (len(cache), cache.bytes, cache.stats.too_large) == (0, 0, 2)


def test_expired_and_replaced_entries_give_their_bytes_back() -> None:
    clock = Clock()
    cache = DnsCache(clock=clock)
    _get(cache, Upstream((b"x" * 1000,), ttl=10))
    held = cache.bytes
    assert held > 1000
    clock.now += 11
    _get(cache, Upstream((b"y" * 10,), ttl=10))
    assert 0 < cache.bytes < held
    _get(cache, Upstream(ttl=10), key="other.example")
    clock.now += 11
    for key in ("example.org", "other.example"):
        _get(cache, Upstream(ttl=0), key=key)  # expired, and not kept again
    assert (len(cache), cache.bytes) == (0, 0)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda n: ipaddress.IPv4Address(n), id="A"),
        pytest.param(lambda n: ipaddress.IPv6Address(n << 64 | n), id="AAAA"),
        pytest.param(lambda n: b"v=spf1 ip4:192.0.2.%d -all" % (n % 256), id="TXT"),
        pytest.param(lambda n: f"mx{n}.example.org", id="MX"),
        pytest.param(lambda n: f"mx{n}.bücher.example", id="MX-unicode"),
    ],
)
def test_the_accounted_bytes_are_at_least_the_memory_used(
    make: Callable[[int], object],
) -> None:
    cache = DnsCache(max_bytes=1 << 30)
    gc.collect()
    tracemalloc.start()
    try:
        for n in range(200):
            answer = tuple(make(n * 1000 + i) for i in range(50))
            _get(cache, Upstream(answer), key=f"name{n}.example.org")
        used = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(cache) == 200
    assert used <= cache.bytes
