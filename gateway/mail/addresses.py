"""Addresses, read by RFC 5322 (`email._header_value_parser`, what `email.policy.default`
uses), with a fast path for the shapes nearly all mail has. A From (or Sender) that is
not one valid mailbox makes the message `UnparseableMail`; invalid To/Cc entries are
dropped. Display names are read leniently (encoded words in quotes, an unquoted comma),
the address itself strictly.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from email import _header_value_parser as rfc5322

from gateway.mail.text import UnparseableMail, decode_words, one_line, unraw

_WHITESPACE = re.compile(r"\s+")
MAX_ADDRESS_CHARS = 254  # RFC 5321 path limit
# The RFC 5322 parser is slow (milliseconds on a few hundred odd characters): what it
# reads is bounded per entry and per message. The common shapes never reach it.
_MAX_ENTRY = 400  # characters of one address list entry
_MAX_PARSED_ENTRIES = 32  # address list entries per message


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_UTF8_ATEXT = r"[\w!#$%&'*+/=?^`{|}~-]"  # RFC 6532: letters of any script too
_ASCII_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_UTF8_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
_PLAIN_ADDRESS = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@{_ASCII_LABEL}(?:\.{_ASCII_LABEL})*"
_QUOTED = r'"(?:[^"\\]|\\[\s\S])*"'
# Display name words; parentheses too, as in "Jan de Vries (Klant BV)".
_PHRASE = r"[\w.!#$%&'*+/=?^`{|}~()-]+(?:\s+[\w.!#$%&'*+/=?^`{|}~()-]+)*"
# One mailbox in the shapes nearly all mail has: an address, or a display name (words
# or one quoted string) and an address in angle brackets. Anything else is left to the
# RFC 5322 parser.
_SIMPLE_MAILBOX = re.compile(
    rf"\s*(?:(?P<bare>{_PLAIN_ADDRESS})|(?:(?P<name>{_PHRASE}|{_QUOTED})\s*)?"
    rf"<(?P<angle>{_PLAIN_ADDRESS})>)\s*"
)
# Text and then one address in angle brackets: the text is the display name even when
# it holds an unquoted comma or an address ("Bakker, Jan <jan@x>", "a@b <c@d>").
_NAME_THEN_ANGLE = re.compile(r"(?P<name>[^<>]*)<(?P<angle>[^<>]*)>\s*")
# A host name (letters of any script) or a domain literal such as [192.0.2.1].
_HOST = re.compile(rf"{_UTF8_LABEL}(?:\.{_UTF8_LABEL})*|\[[^\[\]\\\s]+\]")
_QUOTED_STRING = re.compile(_QUOTED)
# A dot-atom or a quoted string without control characters (line breaks included).
_LOCAL_PART = re.compile(
    rf'{_UTF8_ATEXT}+(?:\.{_UTF8_ATEXT}+)*|"(?:[^"\\\x00-\x1f]|\\[^\x00-\x1f])*"'
)
_FOLDING = re.compile(r"\r?\n(?=[ \t])")
_UNKNOWN_PROBLEM = "not a valid address"
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True)
class _Mailbox:
    name: str
    address: str  # lower-case


@dataclass(frozen=True)
class _Invalid:
    text: str
    defect: str = ""  # what the RFC 5322 parser found wrong, if it said
    problem: str = ""  # what we know is wrong, before looking at the text


_Entry = _Mailbox | _Invalid


@dataclass
class Budget:
    """How many more address entries the RFC 5322 parser may read for this message."""

    left: int = _MAX_PARSED_ENTRIES

    def take(self) -> bool:
        self.left -= 1
        return self.left >= 0


def _display_name(raw: str) -> str:
    name = raw.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = _QUOTED_PAIR.sub(r"\1", name[1:-1])
    return one_line(unicodedata.normalize("NFC", decode_words(name)))


def _simple_mailboxes(value: str) -> list[_Mailbox] | None:
    """The mailboxes of a list in the common shapes, or None when it is not that simple."""
    found: list[_Mailbox] = []
    position = 0
    while True:
        match = _SIMPLE_MAILBOX.match(value, position)
        if match is None:
            return None
        address = match["bare"] or match["angle"]
        found.append(_Mailbox(_display_name(match["name"] or ""), address.lower()))
        position = match.end()
        if position == len(value):
            return found
        if value[position] != ",":
            return None
        position += 1


def _valid_domain(domain: str) -> bool:
    return len(domain) <= 253 and _HOST.fullmatch(domain) is not None


def _valid_address(address: str) -> bool:
    """Whether an addr-spec as the RFC 5322 parser writes it back is one we can use
    (the parser lets a few odd local parts through, such as a bare line break)."""
    local, _, domain = address.rpartition("@")
    return _LOCAL_PART.fullmatch(local) is not None and _valid_domain(domain)


def _unfolded(value: str) -> str:
    """A raw address header value unfolded (RFC 5322 2.2.3) and its 8-bit bytes read."""
    return _FOLDING.sub("", unraw(value))


def _comma_separated(value: str) -> list[_Entry]:
    """The entries between commas, for when the RFC 5322 parser gives up."""
    found: list[_Entry] = []
    for piece in value.split(","):
        if piece.strip():
            found.extend(_simple_mailboxes(piece) or [_Invalid(one_line(piece))])
    return found


def _parsed_entries(value: str) -> list[_Entry]:
    """The entries of an address list as the RFC 5322 parser reads them."""
    try:
        parsed, rest = rfc5322.get_address_list(value)
        tokens = list(parsed.all_mailboxes)
    except Exception:  # the parser raises IndexError and others on some broken input
        return _comma_separated(value)
    found: list[_Entry] = []
    for token in tokens:
        valid = token.token_type == "mailbox" and token.local_part and token.domain
        if valid and _valid_address(token.addr_spec):
            # "jan@klant.example (Jan de Vries)": the comment is the only name there is.
            name = token.display_name or " ".join(token.comments)
            name = unicodedata.normalize("NFC", one_line(unraw(name)))
            found.append(_Mailbox(name, token.addr_spec.lower()))
        else:
            defects = [str(d) for d in token.all_defects]
            found.append(_Invalid(one_line(unraw(str(token))), defects[0] if defects else ""))
    if rest.strip():
        found.append(_Invalid(one_line(rest)))
    if len(found) == 1 and isinstance(found[0], _Invalid):  # show it as it was written
        found[0] = _Invalid(one_line(value), found[0].defect)
    return found


def _top_level_pieces(value: str) -> list[str]:
    """The value split at the commas outside quoted strings, comments and angle brackets."""
    pieces: list[str] = []
    start = depth = 0
    quoted = escaped = angle = False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == "(":
            depth += 1
        elif depth:
            depth -= char == ")"
        elif char in '"<>':
            quoted, angle = char == '"', char == "<" or (angle and char != ">")
        elif char == "," and not angle:
            pieces.append(value[start:index])
            start = index + 1
    pieces.append(value[start:])
    return pieces


def _entries(value: str, budget: Budget) -> list[_Entry]:
    """Every entry of an address list: the common shapes by the fast path, the rest by
    the RFC 5322 parser, one entry at a time when the list is long."""
    simple = _simple_mailboxes(value)
    if simple is not None:
        return [*simple]
    pieces = [value] if len(value) <= _MAX_ENTRY else _top_level_pieces(value)
    found: list[_Entry] = []
    for piece in pieces:
        simple = _simple_mailboxes(piece) if len(pieces) > 1 else None
        if simple is not None:
            found.extend(simple)
        elif not piece.strip():
            continue
        elif len(piece) > _MAX_ENTRY:
            found.append(_Invalid(piece[:200], problem=f"longer than {_MAX_ENTRY} characters"))
        elif not budget.take():
            found.append(_Invalid(piece[:200], problem="too many unusual addresses to read"))
        else:
            found.extend(_parsed_entries(piece))
    return found


def _address_problem(entry: _Invalid) -> str:
    """What is wrong with an address, in words."""
    if entry.problem:
        return entry.problem
    found = _spec_problem(entry.text)
    if found == _UNKNOWN_PROBLEM and entry.defect:
        return entry.defect
    return found


def _spec_problem(text: str) -> str:
    spec = text.strip()
    if spec.count("<") != spec.count(">"):
        return "unbalanced angle brackets"
    if spec.count("(") != spec.count(")"):
        return "unbalanced parentheses"
    if "<" in spec:
        angle = _NAME_THEN_ANGLE.fullmatch(spec)
        if angle is None:
            return "misplaced angle brackets"
        spec = angle["angle"].strip()
    if not spec:
        return "empty address"
    unquoted = _QUOTED_STRING.sub('""', spec)
    if "@" not in unquoted:
        return "missing @ and domain"
    if unquoted.count("@") > 1:
        return "more than one @"
    local, _, domain = unquoted.rpartition("@")
    if not local.strip():
        return "missing local part"
    if not domain.strip():
        return "missing domain"
    if _WHITESPACE.search(unquoted):
        return "spaces in the address"
    if not _valid_domain(domain):
        return f"invalid domain {domain[:100]!r}"
    return _UNKNOWN_PROBLEM


def _sender_mailboxes(value: str, budget: Budget) -> list[_Mailbox]:
    """The valid mailboxes of a From or Sender value; UnparseableMail naming the first
    invalid entry. Text before a last address in angle brackets is its display name."""
    trailing = _NAME_THEN_ANGLE.fullmatch(value)
    if trailing is not None and len(value) <= _MAX_ENTRY:
        angle = _simple_mailboxes(f"<{trailing['angle'].strip()}>")
        if angle:
            return [_Mailbox(_display_name(trailing["name"]), angle[0].address)]
    mailboxes: list[_Mailbox] = []
    for entry in _entries(value, budget):
        if isinstance(entry, _Invalid):
            shown = one_line(entry.text, 200)
            raise UnparseableMail(f"invalid sender address {shown!r}: {_address_problem(entry)}")
        mailboxes.append(entry)
    return mailboxes


def sender_mailbox(headers: dict[str, list[str]], budget: Budget) -> _Mailbox:
    """Who sent the message: the one mailbox in From; the Sender when From holds none
    or several (RFC 5322 3.6.2)."""
    authors = [_unfolded(v) for v in headers.get("from", [])[:1] if v.strip()]
    found = _sender_mailboxes(authors[0], budget) if authors else []
    if len(found) != 1:
        agents = [_unfolded(v) for v in headers.get("sender", [])[:1] if v.strip()]
        on_behalf = _sender_mailboxes(agents[0], budget) if agents else []
        if len(on_behalf) == 1:
            return on_behalf[0]
        if len(found) > 1:
            raise UnparseableMail(
                f"From holds {len(found)} addresses and no Sender says which one sent it"
            )
        raise UnparseableMail("no sender address (From/Sender missing or empty)")
    return found[0]


def address_list(values: Iterable[str], budget: Budget) -> tuple[str, ...]:
    """The valid addresses of address headers, lower-case, in order, without duplicates;
    invalid entries are left out."""
    out: dict[str, None] = {}
    for raw in values:
        value = _unfolded(raw)
        for entry in _entries(value, budget) if value.strip() else []:
            if isinstance(entry, _Mailbox) and len(entry.address) <= MAX_ADDRESS_CHARS:
                out.setdefault(entry.address, None)
    return tuple(out)
