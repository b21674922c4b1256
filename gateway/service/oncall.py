"""Outside office hours: what a new ticket's customer is told, and the 24/7 page."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway.domain.customers import Contract
from gateway.domain.oncall import mail_says_urgent, should_page
from gateway.mail.parse import ParsedMail
from gateway.service.desk import SYSTEM, Desk
from gateway.service.notices import notify
from gateway.service.tickets import record
from gateway.store.models import Organisation, Ticket

_DAYS = {
    "nl": ("maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_MONTHS = {
    "nl": ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus",
           "september", "oktober", "november", "december"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
}  # fmt: skip


def spoken_moment(desk: Desk, when: datetime, language: str) -> str:
    """ "op maandag 30 november om 08:30" / "on Monday 30 November at 08:30"."""
    local = when.astimezone(desk.calendar.timezone)
    lang = language if language in _DAYS else "nl"
    day, month = _DAYS[lang][local.weekday()], _MONTHS[lang][local.month - 1]
    clock = local.strftime("%H:%M")
    if lang == "nl":
        return f"op {day} {local.day} {month} om {clock}"
    return f"on {day} {local.day} {month} at {clock}"


def contract_of(org: Organisation | None) -> Contract:
    return Contract.NONE if org is None else Contract(org.contract)


def support_context(
    desk: Desk, org: Organisation | None, now: datetime, language: str
) -> dict[str, Any]:
    """For the customer's notification: is the desk open, when does it open, and (24/7
    customers only, outside office hours) the on-call number."""
    is_open = desk.calendar.is_open(now)
    next_opening = "" if is_open else spoken_moment(desk, desk.calendar.next_opening(now), language)
    on_call = contract_of(org) is Contract.SLA_24X7 and not is_open
    return {
        "desk_open": is_open,
        "next_opening": next_opening,
        "oncall_phone": desk.settings.oncall.phone if on_call else "",
    }


async def page_if_urgent(
    session: Any,
    desk: Desk,
    ticket: Ticket,
    org: Organisation | None,
    mail: ParsedMail,
    now: datetime,
) -> bool:
    """Page the on-call service about a new ticket when the contract and the hour allow
    it and the mail is urgent; at most one page per ticket."""
    oncall = desk.settings.oncall
    if not oncall.address or org is None:
        return False
    urgent = mail_says_urgent(mail.subject, mail.headers, oncall.urgent_words)
    if not should_page(
        contract_of(org),
        desk_open=desk.calendar.is_open(now),
        category=ticket.category,
        priority=ticket.priority,
        urgent_mail=urgent,
    ):
        return False
    sent = await notify(
        session,
        desk,
        ticket,
        "page",
        [oncall.address],
        source="page",  # one page per ticket, however often it is decided
        now=now,
        language=desk.settings.desk.language,
        auto_submitted="auto-generated",
        customer=org.name,
        body=mail.new_text[:300],
    )
    if sent:
        await record(
            session, ticket, "page", None, oncall.address, by=SYSTEM, now=now, reason="24/7"
        )
    return bool(sent)
