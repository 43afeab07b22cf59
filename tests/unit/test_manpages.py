"""The man pages: clean mdoc, and in step with the code.

spf-milter.yaml(5) must document every key the configuration loaders accept,
and no other; spf-milter(8) every option and command of the command line,
and no other. Both sides come from the code, not from a list kept here: the
keys are those of every mapping the loaders read (each Fields reader and the
keys it allows) while loading the shipped samples and a policy written in
every form, so a key added to the code fails this test until the page has it.
The defaults the page states for the daemon's keys and the policy's results
are those of the code.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import shutil
import subprocess
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from spf_milter import config
from spf_milter.cli import build_parser
from spf_milter.config import daemonfile, policyfile
from spf_milter.config.fields import Fields
from spf_milter.config.problems import Context, KeyPath
from spf_milter.config.yamlnodes import Node
from spf_milter.policy import DEFAULT_RULE
from spf_milter.spf import SpfResult

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
# Defaults the page describes in words: the host name, the file's directory.
DESCRIBED_DEFAULTS = ("authserv_id", "policy", "policy_dir", "headers.receiver")


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


Item = tuple[list[str], list[str]]  # keys written together, their text


def marked_lists(page: str) -> dict[str, list[Item]]:
    """Return the items (``.It Ic KEY``) of each list marked ``.\\" keys: NAME``.

    Items written one after the other (``.It Ic user`` ``.It Ic group``)
    share the text that follows them.
    """
    lists: dict[str, list[Item]] = {}
    items: list[Item] = []
    depth = 0
    for line in page.splitlines():
        marker = re.fullmatch(r'\.\\" keys: (\S+)', line)
        if marker:
            items = lists.setdefault(marker.group(1), [])
            depth = 0
        elif line.startswith(".Bl"):
            depth += 1
        elif line.startswith(".El"):
            depth -= 1
            items = items if depth > 0 else []
        elif depth == 1 and line.startswith(".It Ic "):
            if not items or items[-1][1]:
                items.append(([], []))
            items[-1][0].append(line.split()[2])
        elif depth >= 1 and items:
            items[-1][1].append(line)
    return lists


def documented_keys(page: str) -> dict[str, set[str]]:
    """Return the keys of each marked list."""
    return {
        name: {key for keys, _ in items for key in keys}
        for name, items in marked_lists(page).items()
    }


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
        for module in (daemonfile, policyfile)
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


def documented_defaults(page: str, list_name: str) -> dict[str, list[str]]:
    """Return the words after "Default:" (or "Defaults:") of each key's text."""
    defaults: dict[str, list[str]] = {}
    for keys, body in marked_lists(page)[list_name]:
        text = " ".join(line.lstrip(".") for line in body)
        text = re.sub(r"(^|\s)(Cm|Pa|Ql|Ar|Ic|Pq|Po|Pc|Ns)(?=\s)", " ", text)
        found = re.search(r"Defaults?:\s*(.*)", text)
        for key in keys:
            defaults[key] = found.group(1).split() if found else []
    return defaults


def _as_documented(value: object) -> str | None:
    """Return a default as the page writes it; None for kinds it describes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str | Path | ipaddress.IPv4Address):
        return str(value)
    if isinstance(value, config.UnixSocket | config.InetSocket):
        return value.connection_string()
    return None


def _code_default(daemon: config.DaemonConfig, key: str) -> object:
    owner: object = daemon
    for part in key.split("."):
        owner = getattr(owner, part, None)
    return owner


def test_config_page_states_the_defaults_of_the_code(tmp_path: Path) -> None:
    (tmp_path / "spf-milter.yaml").write_text("authserv_id: mx.example\n")
    daemon = config.load_config(tmp_path / "spf-milter.yaml")  # every default
    defaults = documented_defaults(CONFIG_PAGE.read_text(), "daemon")
    compared = []
    for key, words in defaults.items():
        expected = _as_documented(_code_default(daemon, key))
        if expected is None or key in DESCRIBED_DEFAULTS:
            continue  # a mapping, a list, none, or described in words
        if len(words) >= 3 and words[1] == "and":  # "Defaults: 0 and 3600."
            words = words[2:] if key.endswith("max_ttl") else words
        assert words, f"{key}: no default in {CONFIG_PAGE.name}"
        assert words[0].rstrip(".") in (expected, expected + ".0"), key
        compared.append(key)
    assert len(compared) >= 15  # the parser found the items


def test_config_page_states_the_default_action_of_each_result() -> None:
    defaults = documented_defaults(CONFIG_PAGE.read_text(), "result")
    assert set(defaults) == {str(result) for result in SpfResult}
    for result in SpfResult:
        words = " ".join(defaults[str(result)])
        if DEFAULT_RULE.helo[result].kind == DEFAULT_RULE.mailfrom[result].kind:
            assert words == f"{DEFAULT_RULE.helo[result].kind}.", result
        else:
            assert words == (
                f"{DEFAULT_RULE.helo[result].kind} for HELO;"
                f" {DEFAULT_RULE.mailfrom[result].kind} for MAIL FROM."
            ), result


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
