"""Two daemons behind one Postfix, its clients split by address.

README, "More than one core": a host that needs more than one process runs
one instance per socket and lets Postfix's smtpd_milter_maps pick one by
the client's address. Each instance here has its own authserv-id, so the
delivered message tells which one checked it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Final

import pytest

from helpers.dnszone import Zone
from helpers.headerparse import parse_auth_results
from helpers.milterdaemon import MilterDaemon, serving
from mta.common import make_public_dir
from mta.postfix import PostfixInstance
from mta.smtp import send

pytestmark = [pytest.mark.integration, pytest.mark.postfix]

ZONE: Final = """\
$TTL 300
$ORIGIN example.net.
@    TXT "v=spf1 ip4:127.0.0.0/8 -all"
"""
# The real source address of each client, and the instance it must reach.
SPLIT: Final = {"127.0.0.10": "first.test.example", "127.0.0.11": "second.test.example"}


def _instance(authserv_id: str) -> AbstractContextManager[MilterDaemon]:
    config = f"authserv_id: {authserv_id}\ntrusted_networks: []\n"
    return serving(
        f"spf-milter-{authserv_id}-", Zone.from_text(ZONE), config=config, policy=""
    )


@pytest.fixture(scope="module")
def instances() -> Iterator[dict[str, MilterDaemon]]:
    first, second = SPLIT.values()
    with _instance(first) as one, _instance(second) as two:
        yield {first: one, second: two}


@pytest.fixture
def split_postfix(
    postfix: PostfixInstance, instances: dict[str, MilterDaemon]
) -> Iterator[PostfixInstance]:
    work_dir = make_public_dir("spf-milter-split-")
    table = work_dir / "spf_milters"
    table.write_text(
        "".join(
            f"{source}/32 {instances[authserv_id].milter_spec}\n"
            for source, authserv_id in SPLIT.items()
        )
    )
    table.chmod(0o644)
    try:
        postfix.reset(main_cf={"smtpd_milter_maps": f"cidr:{table}"})
        yield postfix
    finally:
        postfix.reset()
        shutil.rmtree(work_dir, ignore_errors=True)


def test_each_client_is_checked_by_its_own_instance(
    split_postfix: PostfixInstance,
) -> None:
    for source, authserv_id in SPLIT.items():
        result = send(
            split_postfix.port,
            source=source,
            helo="mail.example.net",
            mail_from="alice@example.net",
            rcpt_to=["user@dest.test"],
        )
        assert result.accepted, (result, split_postfix.maillog_tail())
        delivery = split_postfix.wait_for_delivery(
            lambda d, queue_id=result.queue_id: d.queue_id == queue_id
        )
        (field,) = delivery.raw_fields("Authentication-Results")
        parsed = parse_auth_results(field.decode("ascii").split(":", 1)[1])
        assert parsed.authserv_id == authserv_id, field
        assert "spf=pass" in field.decode("ascii"), field
