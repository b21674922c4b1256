"""Mail the desk records but does not act on: our own loop, auto-replies, bounces, lists.

`classify` runs the rules below in order and the first that matches gives the reason;
a mail no rule matches is taken in (reason None). The reasons are stable strings: they
are stored with the inbound message and shown to agents.

| reason              | when                                                                  |
| ------------------- | --------------------------------------------------------------------- |
| `own_loop`          | our loop header (`X-Ticket-Gateway-Loop`) carries our token           |
| `own_message_id`    | the mail's Message-ID is one we generated (`is_own_message_id`)       |
| `from_desk_address` | the sender is one of the desk addresses                               |
| `bounce`            | multipart/report (delivery or read reports), a mailer-daemon or       |
|                     | postmaster sender, or X-Failed-Recipients                             |
| `x_loop`            | an X-Loop header names one of the desk addresses                      |
| `auto_submitted`    | Auto-Submitted (RFC 3834) with any keyword but `no`; comments and     |
|                     | parameters allowed, case-insensitive                                  |
| `auto_reply_header` | X-Autoreply, X-Autorespond or X-MS-Exchange-Inbox-Rules-Loop present  |
| `out_of_office`     | the subject starts like an out-of-office reply (nl, en, de, fr),      |
|                     | with or without `Re:`                                                 |
| `bulk_precedence`   | Precedence: bulk, junk or auto_reply                                  |
| `empty_return_path` | Return-Path: <> (a null envelope sender)                              |
| `mailing_list`      | List-Id, List-Unsubscribe, List-Post or Precedence: list, when the    |
|                     | list policy is "ignore"                                               |

Order matters: our own mail first (loop, Message-ID), then desk addresses and bounces,
then the rest. The automatic-reply rules come before the null Return-Path because an
Exchange out-of-office is sent from <> and must still be known as one.

Besides the reason, a `Verdict` says
- `auto_reply`: an ignored mail shows the signs of an automatic reply (Auto-Submitted:
  auto-replied, an auto-reply header, an out-of-office subject, Precedence: auto_reply)
  and is none of our own mail, a desk address, a bounce or a loop: it may be attached
  to its ticket as an ignored article, without notification or status change;
- `suppress_auto_reply`: the sender asks for no automatic answers (X-Auto-Response-Suppress
  names All, AutoReply or OOF; values are comma-separated, e.g. "DR, RN, NRN, OOF,
  AutoReply"); set whether or not the mail is taken in.

Precedence: list is read as a list header, not as bulk, so that list_policy "accept"
takes in what list servers such as Mailman and Google Groups deliver (they set it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from email.utils import getaddresses
from typing import Literal

from gateway.mail.parse import ParsedMail

LOOP_HEADER = "X-Ticket-Gateway-Loop"

ListPolicy = Literal["ignore", "accept"]

_BOUNCE_LOCALPARTS = frozenset({"mailer-daemon", "postmaster"})
_AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-ms-exchange-inbox-rules-loop")
_LIST_HEADERS = ("list-id", "list-unsubscribe", "list-post")
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "auto_reply"})
_SUPPRESS_TOKENS = frozenset({"all", "autoreply", "oof"})
# Reasons that say the mail is ours, looped or a delivery report: never an auto-reply.
_NOT_AUTO_REPLY = frozenset({"own_loop", "own_message_id", "from_desk_address", "bounce", "x_loop"})

_INNER_COMMENT = re.compile(r"\([^()]*\)")
_LIST_SEPARATORS = re.compile(r"[\s,;]+")
_OUT_OF_OFFICE_SUBJECT = re.compile(
    r"^\s*(?:re\s*:\s*)*(?:"
    r"automatisch\s+antwoord\s*:|afwezig\s*:"
    r"|automatic\s+reply\s*:|auto-reply\s*:|autoreply\s*:"
    r"|out\s+of\s+office(?:\s+autoreply)?\s*:|out\s+of\s+the\s+office\b"
    r"|abwesenheitsnotiz\b|automatische\s+antwort\s*:"
    r"|réponse\s+automatique\b"
    r")",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Verdict:
    """What the desk does with a mail: take it in (reason None) or only record it."""

    reason: str | None
    auto_reply: bool = False
    suppress_auto_reply: bool = False


@dataclass(frozen=True)
class _Context:
    mail: ParsedMail
    desk_addresses: frozenset[str]
    loop_token: str
    is_own_message_id: Callable[[str], bool]
    list_policy: ListPolicy


def _without_comments(value: str) -> str:
    """A header value without its (possibly nested) parenthesised comments."""
    previous = None
    while previous != value:
        previous, value = value, _INNER_COMMENT.sub(" ", value)
    return value


def _keyword(mail: ParsedMail, name: str) -> str | None:
    """The first word of a header such as Auto-Submitted or Precedence, lower-case,
    without comments or parameters; None when the header is absent."""
    value = mail.headers.get(name)
    if value is None:
        return None
    return _without_comments(value).split(";", 1)[0].strip().lower()


def _is_list_mail(mail: ParsedMail) -> bool:
    return _keyword(mail, "precedence") == "list" or any(
        name in mail.headers for name in _LIST_HEADERS
    )


def _asks_no_auto_reply(mail: ParsedMail) -> bool:
    value = mail.headers.get("x-auto-response-suppress", "")
    return not _SUPPRESS_TOKENS.isdisjoint(_LIST_SEPARATORS.split(value.lower()))


def _has_our_loop_header(ctx: _Context) -> bool:
    value = ctx.mail.headers.get(LOOP_HEADER.lower())
    return value is not None and value.strip().lower() == ctx.loop_token.lower()


def _has_our_message_id(ctx: _Context) -> bool:
    return ctx.mail.message_id is not None and ctx.is_own_message_id(ctx.mail.message_id)


def _is_from_desk_address(ctx: _Context) -> bool:
    return ctx.mail.sender in ctx.desk_addresses


def _is_bounce(ctx: _Context) -> bool:
    return (
        ctx.mail.content_type == "multipart/report"
        or ctx.mail.sender.split("@", 1)[0] in _BOUNCE_LOCALPARTS
        or "x-failed-recipients" in ctx.mail.headers
    )


def _x_loop_names_desk(ctx: _Context) -> bool:
    value = ctx.mail.headers.get("x-loop")
    if value is None:
        return False
    named = {address.strip().lower() for _name, address in getaddresses([value])}
    return not named.isdisjoint(ctx.desk_addresses)


def _is_auto_submitted(ctx: _Context) -> bool:
    keyword = _keyword(ctx.mail, "auto-submitted")
    return keyword is not None and keyword != "no"


def _has_auto_reply_header(ctx: _Context) -> bool:
    return any(name in ctx.mail.headers for name in _AUTO_REPLY_HEADERS)


def _has_out_of_office_subject(ctx: _Context) -> bool:
    return _OUT_OF_OFFICE_SUBJECT.match(ctx.mail.subject) is not None


def _has_bulk_precedence(ctx: _Context) -> bool:
    return _keyword(ctx.mail, "precedence") in _BULK_PRECEDENCE


def _has_empty_return_path(ctx: _Context) -> bool:
    value = ctx.mail.headers.get("return-path")
    return value is not None and "".join(value.split()) == "<>"


def _is_ignored_list_mail(ctx: _Context) -> bool:
    return ctx.list_policy == "ignore" and _is_list_mail(ctx.mail)


_RULES: tuple[tuple[str, Callable[[_Context], bool]], ...] = (
    ("own_loop", _has_our_loop_header),
    ("own_message_id", _has_our_message_id),
    ("from_desk_address", _is_from_desk_address),
    ("bounce", _is_bounce),
    ("x_loop", _x_loop_names_desk),
    ("auto_submitted", _is_auto_submitted),
    ("auto_reply_header", _has_auto_reply_header),
    ("out_of_office", _has_out_of_office_subject),
    ("bulk_precedence", _has_bulk_precedence),
    ("empty_return_path", _has_empty_return_path),
    ("mailing_list", _is_ignored_list_mail),
)


def _looks_like_auto_reply(ctx: _Context) -> bool:
    """Any sign of an automatic reply, whichever rule gave the reason."""
    return (
        _keyword(ctx.mail, "auto-submitted") == "auto-replied"
        or _keyword(ctx.mail, "precedence") == "auto_reply"
        or _has_auto_reply_header(ctx)
        or _has_out_of_office_subject(ctx)
    )


def classify(
    mail: ParsedMail,
    *,
    desk_addresses: Collection[str],
    loop_token: str,
    is_own_message_id: Callable[[str], bool] = lambda _mid: False,
    list_policy: ListPolicy = "ignore",
) -> Verdict:
    """Whether the desk takes this mail in, and how to treat it when it does not."""
    ctx = _Context(
        mail=mail,
        desk_addresses=frozenset(a.strip().lower() for a in desk_addresses),
        loop_token=loop_token.strip(),
        is_own_message_id=is_own_message_id,
        list_policy=list_policy,
    )
    reason = next((reason for reason, applies in _RULES if applies(ctx)), None)
    auto_reply = (
        reason is not None and reason not in _NOT_AUTO_REPLY and _looks_like_auto_reply(ctx)
    )
    suppress = _asks_no_auto_reply(mail)
    return Verdict(reason=reason, auto_reply=auto_reply, suppress_auto_reply=suppress)
