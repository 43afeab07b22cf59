"""Render the Received-SPF and Authentication-Results header field values.

The functions return field VALUES; the milter adds them under their names.
Everything here is pure and never raises on hostile input: the HELO name and
MAIL FROM address arrive from pymilter as ``surrogateescape`` strings and may
hold CR, LF, NUL, quotes, parentheses, 8-bit bytes or 10 kB of junk.

Decisions, in the order a value goes through them:

* **Truncation.** An untrusted value (HELO, sender, explanation, problem,
  receiver, authserv-id) longer than ``MAX_TEXT_CHARS`` keeps its first
  characters and ends in ``TRUNCATION_MARKER``. No legitimate value comes
  close (RFC 5321 §4.5.3.1: paths ≤ 256, domains ≤ 255 octets), and the cap
  is what guarantees RFC 5322 §2.1.1's 998-octet line limit below.
* **Character set: 7-bit ASCII only.** Every character outside printable
  ASCII (0x20-0x7E) becomes ``?``: controls (CR, LF, NUL, TAB, DEL, C1),
  lone surrogates from undecodable bytes, and also valid non-ASCII text.
  RFC 6532 allows UTF-8 in header fields only for messages that travel with
  SMTPUTF8, which this module cannot know; raw UTF-8 in a legacy message
  breaks 7-bit relays and most A-R parsers. We do not convert U-labels to
  A-labels either: IDNA 2003 (the stdlib codec) maps some names to different
  domains (``faß.de`` to ``fass.de``), and a result must never be claimed for
  a domain other than the one checked. A ``?`` cannot appear in a host name,
  so a mangled domain can never align with a real one in DMARC.
* **Quoting.** Received-SPF values are an RFC 5322 ``dot-atom`` when they
  are one, else a ``quoted-string`` (RFC 7208 §9.1); so an IPv6 client-ip is
  quoted. A-R values are an RFC 2045 ``token`` when they are one, else a
  ``quoted-string``; properties may also be ``[local-part] "@" domain-name``
  (RFC 8601 §2.2). Inside a quoted-string ``"`` and ``\\`` are escaped. The
  Received-SPF comment is human text: ``(`` and ``)`` become ``[`` and ``]``
  and ``\\`` becomes ``?``, so even a parser that ignores quoted-pairs sees one
  balanced comment.
* **What naive readers split on.** Quoting is correct, but the readers that
  matter do not honour it: SpamAssassin 4.0's SPF plugin takes the last
  ``; spf=`` of an A-R field and reads ``smtp.<identity>`` as the longest
  run of non-blanks before an ``=``; it takes the last ``identity=`` of a
  Received-SPF field. So text from the client (HELO, MAIL FROM) or from the
  DNS (the problem quoting a record) obeys three more rules, after the
  character set: (1) in an A-R value ``;`` becomes ``?``, so the only ``;``
  of the field are ours; (2) in ``smtp.helo`` and ``reason`` values ``=``
  becomes ``?`` too (no host name holds one), so the only ``=`` a reader can
  pair with ``smtp.`` is ours; ``smtp.mailfrom`` keeps its ``=``, common in
  SRS and BATV local parts (a reader that stumbles on it skips the clause,
  it cannot misread it); (3) in Received-SPF ``identity=`` is the last pair,
  so no client or DNS text follows it. Received-SPF keeps every character
  the character-set rule keeps: the full sender, HELO and problem are there.
* **Folding.** Atoms are joined by a space, or by ``"\\n\\t"`` when the line
  would pass ``FOLD_WIDTH`` (78, RFC 5322 §2.1.1 SHOULD), counting the field
  name. Folds fall only between atoms: between the result, the comment's
  words and the key=value pairs, or between clauses and properties of the
  A-R; never inside a token or quoted-string. Postfix and Sendmail accept
  the bare LF. ``fold=False`` folds only where the 998-octet MUST requires it.

Authentication-Results (RFC 8601): each identity that was checked gets its
own ``spf=`` clause with its own property, ``smtp.mailfrom`` or ``smtp.helo``,
so a DMARC verifier can never take the HELO result for the MAIL FROM one
(CVE-2019-20790). An identity that was not checked (``None``) is left out:
``spf=none`` is an RFC 7208 result (no record) and would be a false claim.
With neither checked, the value is ``<authserv-id>; none`` (§2.2 no-result).
For permerror and temperror the ``problem`` goes into ``reason=`` (§2.2
reasonspec) and into Received-SPF's ``problem=``; other results carry
``mechanism=`` there instead. Empty texts are left out. The fail explanation
(RFC 7208 §6.2) goes only into the Received-SPF comment, never into the A-R.
``smtp.mailfrom`` is the whole address checked (for the null sender
``postmaster@<HELO>``, RFC 7208 §2.4), as Gmail writes it; RFC 8601 §2.7.2
allows the domain alone too. The MAIL FROM clause comes first and the HELO
clause last, which is the one a reader that takes the last ``spf=`` sees.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from spf_milter.spf.result import CheckResult, Identity, SpfResult

FOLD_WIDTH: Final = 78  # RFC 5322 §2.1.1: lines SHOULD be at most 78 characters
MAX_LINE_OCTETS: Final = 998  # RFC 5322 §2.1.1: lines MUST be at most 998 octets
MAX_TEXT_CHARS: Final = 400  # our cap per untrusted value; 2*400 + key < 998
TRUNCATION_MARKER: Final = "...[truncated]"
FOLD: Final = "\n\t"

_RECEIVED_SPF_NAME: Final = "Received-SPF: "
_AUTH_RESULTS_NAME: Final = "Authentication-Results: "
_ERROR_RESULTS: Final = frozenset({SpfResult.PERMERROR, SpfResult.TEMPERROR})

# RFC 5322 §3.2.3: atext, and dot-atom-text = 1*atext *("." 1*atext).
_ATEXT: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM: Final = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
# RFC 2045 §5.1: token = 1*<US-ASCII CHAR except SPACE, CTLs, tspecials>.
TOKEN: Final = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`{|}~-]+")
# RFC 8601 §2.2 domain-name (RFC 6376 §3.5, RFC 5321 sub-domain = Let-dig [Ldh-str]).
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN_NAME: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_FWS_CHARS: Final = " \t\r\n"  # unfolding: a line break inside CFWS is whitespace
_AFTER_AUTHSERV_ID: Final = _FWS_CHARS + "(;"  # RFC 8601 §2.2: CFWS or ";"


@dataclass(frozen=True, slots=True)
class _Scanned:
    """A lexeme read from an existing field value, and where it ended."""

    value: str
    end: int


def render_received_spf(
    *,
    result: CheckResult,
    identity: Identity,
    client_ip: IPv4Address | IPv6Address,
    envelope_from: str,
    helo: str,
    receiver: str | None,
    fold: bool = True,
) -> str:
    """Render a Received-SPF value (RFC 7208 §9.1); ``receiver=None`` hides it."""
    who = helo if identity is Identity.HELO else envelope_from
    if not who:
        who = f"postmaster@{helo}"  # RFC 7208 §2.4: the null sender
    comment = _received_spf_comment(result, who, client_ip, receiver)
    pairs = _received_spf_pairs(result, identity, client_ip, envelope_from, helo)
    if receiver is not None:
        pairs.insert(0, ("receiver", receiver))
    atoms = [str(result.result), *_comment_atoms(comment)]
    atoms += _separated(
        [f"{key}={_dot_atom_or_quoted(_clean(value))}" for key, value in pairs]
    )
    return _fold_atoms(atoms, used=len(_RECEIVED_SPF_NAME), fold=fold)


def render_authentication_results(
    *,
    authserv_id: str,
    mailfrom: CheckResult | None,
    mailfrom_address: str,
    helo: CheckResult | None,
    helo_name: str,
    fold: bool = True,
) -> str:
    """Render an Authentication-Results value (RFC 8601 §2.2) for both identities."""
    clauses: list[list[str]] = []
    if mailfrom is not None:
        clauses.append(_spf_resinfo(mailfrom, "mailfrom", mailfrom_address))
    if helo is not None:
        clauses.append(_spf_resinfo(helo, "helo", helo_name))
    for clause in clauses[:-1]:
        clause[-1] += ";"
    head = [_token_or_quoted(_clean(authserv_id)) + ";"]
    if not clauses:
        head.append("none")  # RFC 8601 §2.2: no-result
    return _fold([head, *clauses], used=len(_AUTH_RESULTS_NAME), fold=fold)


def is_valid_authserv_id(text: str) -> bool:
    """Tell whether ``text`` can be our authserv-id (RFC 8601 §2.5).

    The id is an RFC 2045 ``value``: best a token such as the host name,
    which every parser reads, else anything a quoted-string carries without
    loss. We accept non-empty printable ASCII without leading or trailing
    spaces, short enough never to be truncated.
    """
    return (
        0 < len(text) <= MAX_TEXT_CHARS
        and text == text.strip(" ")
        and all(" " <= char <= "~" for char in text)
    )


def extract_authserv_id(field_value: str) -> str | None:
    """Return the authserv-id of an Authentication-Results value, or None.

    RFC 8601 §2.2: ``[CFWS] authserv-id [CFWS authres-version] ...`` where the
    id is an RFC 2045 value. Folds, comments and quoted-pairs are undone.
    Anything unparsable gives None; this never raises.
    """
    start = _skip_cfws(field_value, 0)
    if start is None or start >= len(field_value):
        return None
    if field_value[start] == '"':
        scanned = _scan_quoted_string(field_value, start)
    else:
        scanned = _scan_token(field_value, start)
    if scanned is None or not scanned.value:
        return None
    if scanned.end < len(field_value) and (
        field_value[scanned.end] not in _AFTER_AUTHSERV_ID
    ):
        return None
    return scanned.value


def is_our_authserv_id(field_value: str, authserv_id: str) -> bool:
    """Tell whether an existing A-R value carries our id (case-insensitive).

    RFC 8601 §5: such a field did not come from us and must be removed.
    """
    found = extract_authserv_id(field_value)
    return bool(authserv_id) and (
        found is not None and found.lower() == authserv_id.lower()
    )


def _received_spf_comment(
    result: CheckResult,
    who: str,
    client_ip: IPv4Address | IPv6Address,
    receiver: str | None,
) -> str:
    """Say the result as a sentence, in the style of RFC 7208 §9.1's example."""
    sender = _comment_text(who)
    ip = _comment_text(str(client_ip))  # an IPv6 scope id is free text
    match result.result:
        case SpfResult.PASS:
            text = f"domain of {sender} designates {ip} as permitted sender"
        case SpfResult.FAIL:
            text = f"domain of {sender} does not designate {ip} as permitted sender"
        case SpfResult.SOFTFAIL:
            text = (
                f"domain of transitioning {sender} does not designate {ip}"
                " as permitted sender"
            )
        case SpfResult.NEUTRAL:
            text = f"{ip} is neither permitted nor denied by domain of {sender}"
        case SpfResult.NONE:
            text = f"domain of {sender} does not designate permitted sender hosts"
        case SpfResult.TEMPERROR:
            text = f"temporary error while checking domain of {sender}"
        case SpfResult.PERMERROR:
            text = f"permanent error in SPF record of domain of {sender}"
    # RFC 7208 §6.2: the explanation belongs to a fail result only.
    if result.result is SpfResult.FAIL and result.explanation:
        text += f", explanation: {_comment_text(result.explanation)}"
    if receiver is not None:
        text = f"{_comment_text(receiver)}: {text}"
    return text


def _received_spf_pairs(
    result: CheckResult,
    identity: Identity,
    client_ip: IPv4Address | IPv6Address,
    envelope_from: str,
    helo: str,
) -> list[tuple[str, str]]:
    """List the RFC 7208 §9.1 keys after ``receiver``; ``identity`` comes last.

    Readers take the last ``identity=`` of the field (module docstring), so
    nothing from the client or the DNS may follow it.
    """
    pairs = [
        ("client-ip", str(client_ip)),
        ("envelope-from", envelope_from),
        ("helo", helo),
    ]
    # An empty problem or mechanism says nothing; leave the key out.
    if result.result in _ERROR_RESULTS:
        if result.problem:
            pairs.append(("problem", result.problem))
    elif result.mechanism:
        pairs.append(("mechanism", result.mechanism))
    pairs.append(("identity", str(identity)))
    return pairs


def _spf_resinfo(result: CheckResult, prop: str, value: str) -> list[str]:
    """Render one ``spf=`` resinfo with its reason and one smtp property."""
    atoms = [f"spf={result.result}"]
    if result.result in _ERROR_RESULTS and result.problem:
        reason = _auth_results_text(result.problem, keep_equals=False)
        atoms.append(f"reason={_token_or_quoted(reason)}")
    text = _auth_results_text(value, keep_equals=prop == "mailfrom")
    atoms.append(f"smtp.{prop}={_pvalue(text)}")
    return atoms


def _auth_results_text(text: str, *, keep_equals: bool) -> str:
    """Clean untrusted A-R text: no ``;``, nor ``=`` unless kept (module docstring)."""
    text = _clean(text).replace(";", "?")
    return text if keep_equals else text.replace("=", "?")


def _clean(text: str) -> str:
    """Cap ``text`` at MAX_TEXT_CHARS and replace all but printable ASCII."""
    if len(text) > MAX_TEXT_CHARS:
        text = text[: MAX_TEXT_CHARS - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER
    if text.isascii() and text.isprintable():
        return text  # the usual case, checked in C
    return "".join(char if " " <= char <= "~" else "?" for char in text)


def _comment_text(text: str) -> str:
    """Make ``text`` safe as comment content (RFC 5322 §3.2.2 ctext)."""
    return _clean(text).replace("(", "[").replace(")", "]").replace("\\", "?")


def _quote(text: str) -> str:
    """Render a quoted-string (RFC 5322 §3.2.4), escaping ``\\`` and ``"``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_atom_or_quoted(text: str) -> str:
    """Render a Received-SPF value: ``dot-atom / quoted-string`` (RFC 7208 §9.1)."""
    return text if _DOT_ATOM.fullmatch(text) else _quote(text)


def _token_or_quoted(text: str) -> str:
    """Render an RFC 2045 §5.1 ``value``: ``token / quoted-string``."""
    return text if TOKEN.fullmatch(text) else _quote(text)


def _pvalue(text: str) -> str:
    """Render an RFC 8601 §2.2 pvalue: an address or domain as is, else a value."""
    local, at, domain = text.rpartition("@")
    if (
        at
        and _DOMAIN_NAME.fullmatch(domain)
        and (not local or _DOT_ATOM.fullmatch(local))
    ):
        return text
    return _token_or_quoted(text)


def _comment_atoms(text: str) -> list[str]:
    """Split comment text into words, so that folds can fall between them."""
    words = text.split()
    words[0] = "(" + words[0]
    words[-1] += ")"
    return words


def _separated(pairs: Sequence[str]) -> list[str]:
    """End every key=value pair but the last with ``;`` (RFC 7208 §9.1)."""
    return [pair + ";" for pair in pairs[:-1]] + list(pairs[-1:])


def _fold(groups: Sequence[Sequence[str]], *, used: int, fold: bool) -> str:
    """Join atoms with a space, or FOLD where the line would grow too long.

    A group (an A-R clause) starts a new line when it does not fit whole on
    the current one, and is cut between its atoms only if it is longer than
    a line. ``used`` is what the field name takes on the first line. No
    atom passes ``2 * MAX_TEXT_CHARS + 20`` characters, so with its leading
    tab no line can pass MAX_LINE_OCTETS.
    """
    width = FOLD_WIDTH if fold else MAX_LINE_OCTETS
    parts: list[str] = []
    append = parts.append
    line = used
    for group in groups:
        text = group[0] if len(group) == 1 else " ".join(group)
        size = len(text)
        if parts:
            if line + 1 + size > width:
                append(FOLD)
                line = 1
            else:
                append(" ")
                line += 1
        if line + size <= width or len(group) == 1:
            append(text)
            line += size
            continue
        append(group[0])  # longer than a line: cut between its atoms
        line += len(group[0])
        for atom in group[1:]:
            if line + 1 + len(atom) > width:
                append(FOLD)
                line = 1
            else:
                append(" ")
                line += 1
            append(atom)
            line += len(atom)
    return "".join(parts)


def _fold_atoms(atoms: Sequence[str], *, used: int, fold: bool) -> str:
    """Join atoms with a space, or FOLD where the line would grow too long.

    _fold() with every atom a group of its own, without the groups.
    """
    width = FOLD_WIDTH if fold else MAX_LINE_OCTETS
    parts = [atoms[0]]
    append = parts.append
    line = used + len(atoms[0])
    for atom in atoms[1:]:
        size = len(atom)
        if line + 1 + size > width:
            append(FOLD)
            line = 1 + size
        else:
            append(" ")
            line += 1 + size
        append(atom)
    return "".join(parts)


def _skip_cfws(text: str, pos: int) -> int | None:
    """Skip FWS and (nested) comments; None if a comment never closes."""
    depth = 0
    while pos < len(text):
        char = text[pos]
        if char == "\\" and depth:
            pos += 2  # RFC 5322 §3.2.1 quoted-pair inside a comment
            continue
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif not depth and char not in _FWS_CHARS:
            return pos
        pos += 1
    return None if depth else pos


def _scan_token(text: str, pos: int) -> _Scanned | None:
    """Read an RFC 2045 token at ``pos``."""
    found = TOKEN.match(text, pos)
    return None if found is None else _Scanned(found.group(), found.end())


def _scan_quoted_string(text: str, pos: int) -> _Scanned | None:
    """Read a quoted-string at ``pos`` (on its ``"``); unfold and unescape."""
    chars: list[str] = []
    pos += 1
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return _Scanned("".join(chars), pos + 1)
        if char == "\\":
            pos += 1
            if pos == len(text):
                return None
            chars.append(text[pos])
        elif char not in "\r\n":  # RFC 5322 §3.2.2: unfolding drops the CRLF
            chars.append(char)
        pos += 1
    return None
