"""The man pages: clean mdoc, and in step with the code.

spf-milter.yaml(5) must document every key the configuration loaders accept,
and no other; spf-milter(8) every option and command of the command line,
and no other. Both sides come from the code, not from a list kept here: the
keys are those of every mapping the loaders read (each Fields reader and the
keys it allows) while loading the shipped samples and a policy written in
every form, so a key added to the code fails this test until the page has it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from spf_milter import config, configpolicy
from spf_milter.cli import build_parser
from spf_milter.configfields import Fields
from spf_milter.configyaml import Context, KeyPath, Node

TOP = Path(__file__).resolve().parents[2]
MAN = TOP / "docs" / "man"
COMMAND_PAGE = MAN / "spf-milter.8"
CONFIG_PAGE = MAN / "spf-milter.yaml.5"
SAMPLE_CONFIG = TOP / "etc" / "spf-milter.yaml"

# A policy in every form the loader reads: result mappings in the default and
# in a domain, each action's extra key, a domain file with subdomains.
EVERY_FORM_CONFIG = "policy: policy.yaml\npolicy_dir: policy.d\n"
EVERY_FORM_POLICY = """\
default:
  helo: {fail: {action: defer, reply: "451 4.7.23 no"}}
  mailfrom: {softfail: reject}
  trusted_relays: []
  shadow: false
domains:
  example.net:
    subdomains: true
    mailfrom: {softfail: {action: quarantine, reason: "why"}}
"""
EVERY_FORM_DOMAIN_FILE = "helo: {pass: accept}\nsubdomains: false\n"

Read = tuple[Path, KeyPath, frozenset[str]]


@pytest.mark.skipif(shutil.which("mandoc") is None, reason="mandoc is not installed")
@pytest.mark.parametrize("page", [COMMAND_PAGE, CONFIG_PAGE], ids=lambda p: p.name)
def test_page_passes_mandoc_lint(page: Path) -> None:
    done = subprocess.run(
        ["mandoc", "-Tlint", "-W", "warning", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line for line in (done.stdout + done.stderr).splitlines() if str(page) in line
    ]
    assert problems == []


# -- configuration keys --------------------------------------------------------


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Read]:
    """Every mapping the loaders read, with its file, key path and allowed keys."""
    seen: list[Read] = []
    original = Fields.__init__

    def recording(
        self: Fields,
        context: Context,
        node: Node | None,
        allowed: Collection[str] | None,
    ) -> None:
        if allowed is not None:  # None: names, not keys (the domains)
            seen.append((context.path, context.key_path, frozenset(allowed)))
        original(self, context, node, allowed)

    monkeypatch.setattr(Fields, "__init__", recording)
    (tmp_path / "spf-milter.yaml").write_text(EVERY_FORM_CONFIG)
    (tmp_path / "policy.yaml").write_text(EVERY_FORM_POLICY)
    (tmp_path / "policy.d").mkdir()
    (tmp_path / "policy.d" / "example.com.yaml").write_text(EVERY_FORM_DOMAIN_FILE)
    config.load_all(SAMPLE_CONFIG)
    config.load_all(tmp_path / "spf-milter.yaml")
    return seen


def _policy_list(path: Path, key_path: KeyPath) -> str:
    """Name the page's list for a mapping of a policy file.

    A rule is ``default``, ``domains.DOMAIN`` or a whole policy.d file;
    below it come the results of an identity, then an action's mapping.
    """
    if path.parent.name != "policy.d":
        if key_path == ():
            return "policy"
        if key_path[:1] == ("default",):
            key_path = key_path[1:]
        elif key_path[:1] == ("domains",) and len(key_path) >= 2:
            key_path = key_path[2:]
        else:
            return "policy." + ".".join(map(str, key_path))  # a new kind
    levels = ("rule", "result", "action")
    if len(key_path) < len(levels):
        return levels[len(key_path)]
    return "rule." + ".".join(map(str, key_path))  # a new kind: document it


def accepted_keys(reads: list[Read]) -> dict[str, set[str]]:
    """Return the keys the loaders allow, by the page's list names.

    The daemon's keys are named by their full path (``dns.timeout``), as
    check-config's messages name them.
    """
    lists: dict[str, set[str]] = {}
    for path, key_path, allowed in reads:
        if path.name == "spf-milter.yaml":
            prefix = "".join(f"{segment}." for segment in key_path)
            lists.setdefault("daemon", set()).update(prefix + k for k in allowed)
        else:
            lists.setdefault(_policy_list(path, key_path), set()).update(allowed)
    return lists


def documented_keys(page: str) -> dict[str, set[str]]:
    """Return the ``.It Ic KEY`` items of each list marked ``.\\" keys: NAME``."""
    lists: dict[str, set[str]] = {}
    name: str | None = None
    depth = 0
    for line in page.splitlines():
        marker = re.fullmatch(r'\.\\" keys: (\S+)', line)
        if marker:
            name, depth = marker.group(1), 0
            lists[name] = set()
        elif name is None:
            continue
        elif line.startswith(".Bl"):
            depth += 1
        elif line.startswith(".El"):
            depth -= 1
            name = None if depth == 0 else name
        elif depth == 1 and line.startswith(".It Ic "):
            lists[name].add(line.split()[2])
    return lists


def test_config_page_documents_exactly_the_keys_the_loaders_accept(
    reads: list[Read],
) -> None:
    accepted = accepted_keys(reads)
    documented = documented_keys(CONFIG_PAGE.read_text())
    for name in sorted(accepted.keys() | documented.keys()):
        code, page = accepted.get(name, set()), documented.get(name, set())
        assert code - page == set(), f"keys: {name}: not in {CONFIG_PAGE.name}"
        assert page - code == set(), f"keys: {name}: documented, not accepted"


def test_every_key_list_of_the_loaders_was_read(reads: list[Read]) -> None:
    # A *_KEYS list the samples and the policy above never reach would
    # escape the test before this one.
    declared = {
        name: frozenset(value)
        for module in (config, configpolicy)
        for name, value in vars(module).items()
        if name.endswith("_KEYS") and isinstance(value, tuple)
    }
    read = {allowed for _, _, allowed in reads}
    assert declared
    assert {name for name, keys in declared.items() if keys not in read} == set()


def test_the_marked_lists_are_found() -> None:
    # The parser of the page must see what a reader sees.
    lists = documented_keys(CONFIG_PAGE.read_text())
    assert {"socket", "dns.timeout", "metrics.port"} <= lists["daemon"]
    assert "fail" in lists["result"]


# -- command line ----------------------------------------------------------------


def _parsers(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield "", parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_command_page_documents_exactly_the_options_of_the_command() -> None:
    options = {
        option
        for _, parser in _parsers(build_parser())
        for action in parser._actions
        for option in action.option_strings
    }
    page = COMMAND_PAGE.read_text()
    flags = {"-" + flag.replace("\\-", "-") for flag in re.findall(r"\bFl (\S+)", page)}
    assert options - flags == set(), "options missing from spf-milter(8)"
    assert flags - options == set(), "spf-milter(8) documents unknown options"


def test_command_page_documents_every_command() -> None:
    commands = {name for name, _ in _parsers(build_parser()) if name}
    page = COMMAND_PAGE.read_text()
    documented = set(re.findall(r"^\.It Cm (\S+)", page, flags=re.MULTILINE))
    assert commands == documented
