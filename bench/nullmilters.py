"""The floor milters: do-nothing milters that negotiate exactly as ours does.

bench/nullmilter.c (libmilter, compiled here into the work directory) and
bench/nullpymilter.py (pymilter) answer CONTINUE to everything and add
nothing. Which steps the MTA sends, which replies it waits for and which
macros it attaches are not hard-coded: one milter-protocol session to our
running milter reads its SMFIC_OPTNEG answer (steps, actions, macro lists)
and both null milters are started with those terms. Each is then asked
for its own terms in the same way, and must give the same answer.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Final

from bench.milters import Milter, launch, listen_endpoint
from bench.testhelpers import Endpoint, MilterSession, Negotiated

C_SOURCE: Final = Path(__file__).with_name("nullmilter.c")
REPO: Final = Path(__file__).resolve().parents[1]
COMPILE_TIMEOUT: Final = 120.0
NEGOTIATE_TIMEOUT: Final = 10.0
NULL_C: Final = "C null"
NULL_PY: Final = "pymilter null"


def compile_c(work: Path) -> Path:
    """Build bench/nullmilter.c into ``work`` (never committed as a binary)."""
    work.mkdir(parents=True, exist_ok=True)
    binary = work / "nullmilter"
    command = ["gcc", "-O2", "-Wall", "-o", str(binary), str(C_SOURCE)]
    done = subprocess.run(
        [*command, "-lmilter", "-lpthread"],
        capture_output=True,
        timeout=COMPILE_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            "cannot build the C null milter (needs gcc and libmilter-dev):\n"
            + done.stderr.decode(errors="replace")
        )
    return binary


async def _ask(endpoint: Endpoint) -> Negotiated:
    session = await MilterSession.open(endpoint)
    try:
        async with asyncio.timeout(NEGOTIATE_TIMEOUT):
            terms = await session.negotiate()
        session.quit()
    finally:
        session.close()
    return terms


def negotiation(endpoint: Endpoint) -> Negotiated:
    """Return the milter's answer to Postfix's SMFIC_OPTNEG."""
    return asyncio.run(_ask(endpoint))


def terms_args(terms: Negotiated) -> list[str]:
    """Return the null milters' arguments: STEPS ACTIONS [STAGE:MACROS ...]."""
    lists = sorted(terms.macro_lists.items())
    return [
        hex(int(terms.steps)),
        hex(int(terms.actions)),
        *(f"{int(stage)}:{' '.join(names)}" for stage, names in lists),
    ]


def start(work: Path, flavour: str, terms: Negotiated, kind: str = "unix") -> Milter:
    """Start the C or the pymilter null milter with ``terms``; check them."""
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    stem = "null-c" if flavour == NULL_C else "null-py"
    endpoint, spec = listen_endpoint(work, stem, kind)
    if flavour == NULL_C:
        command = [str(compile_c(work)), spec, *terms_args(terms)]
    else:
        module = [sys.executable, "-m", "bench.nullpymilter"]
        command = [*module, spec, *terms_args(terms)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    log = work / f"{stem}-{kind}.log"
    milter = launch(flavour, endpoint, command, log, env, adds_result=False)
    answer = negotiation(endpoint)
    if answer != terms:
        milter.stop()
        raise RuntimeError(f"{flavour} negotiated {answer}, not ours' {terms}")
    return milter
