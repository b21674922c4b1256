"""Read models: tickets as plain dicts for the CLI's JSON (and later the portal)."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.service import participants_of
from gateway.service.attachments import ticket_attachments
from gateway.service.organisations import domains_of, own_targets
from gateway.store.models import (
    Article,
    Attachment,
    Bounce,
    Contact,
    HistoryEntry,
    Organisation,
    OutboxMessage,
    QuarantinedMessage,
    Ticket,
    Timer,
)


def iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def ticket_summary(ticket: Ticket) -> dict[str, Any]:
    return {
        "reference": ticket.reference,
        "subject": ticket.subject,
        "status": ticket.status,
        "category": ticket.category,
        "impact": ticket.impact,
        "urgency": ticket.urgency,
        "priority": ticket.priority,
        "priority_overridden": ticket.priority_overridden,
        "team": ticket.team,
        "requester": ticket.requester,
        "language": ticket.language,
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "closed_at": iso(ticket.closed_at),
        "scheduled_for": iso(ticket.scheduled_for),
        # SLA due times; null while the clock stands still (sla_stopped_since) or
        # without a target. A closed ticket keeps those it had.
        "first_response_due": iso(ticket.first_response_due),
        "resolution_due": iso(ticket.resolution_due),
        "first_response_at": iso(ticket.first_response_at),
        "sla_stopped_since": iso(ticket.sla_stopped_at),
        "article_count": ticket.article_count,
    }


def attachment_view(row: Attachment) -> dict[str, Any]:
    return {
        "id": row.id,
        "article_id": row.article_id,
        "filename": row.filename,
        "content_type": row.content_type,
        "size": row.size,
        "disposition": row.disposition,
        "content_id": row.content_id,
        "forwarded_message": row.is_message,
        "sha256": row.sha256,
        "kept": row.refused is None,
        "refused": row.refused,
    }


def bounce_view(row: Bounce) -> dict[str, Any]:
    return {
        "recipient": row.recipient,
        "action": row.action,
        "status": row.status,
        "permanent": row.permanent,
        "diagnostic": row.diagnostic,
        "notification_id": row.outbox_id,
        "at": iso(row.at),
    }


def article_view(article: Article, attachments: list[Attachment] | None = None) -> dict[str, Any]:
    return {
        "id": article.id,
        "direction": article.direction,
        "author": article.author,
        "kind": article.kind,
        "public": article.public,
        "subject": article.subject,
        "body": article.body,
        "full_body": article.full_body or article.body,
        "message_id": article.message_id,
        "created_at": iso(article.created_at),
        # SPF/DKIM/DMARC as a trusted Authentication-Results header gave them; None
        # when the mail had none from a trusted authserv-id.
        "authentication": None if article.auth is None else json.loads(article.auth),
        "attachments": [attachment_view(a) for a in attachments or []],
    }


def history_view(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "at": iso(entry.at),
        "field": entry.field,
        "old": entry.old,
        "new": entry.new,
        "by": entry.by,
        "reason": entry.reason,
    }


async def ticket_detail(session: AsyncSession, ticket: Ticket) -> dict[str, Any]:
    """A ticket with its participants, articles, history and linked ticket."""
    detail = ticket_summary(ticket)
    detail["participants"] = await participants_of(session, ticket)
    linked = None
    if ticket.linked_ticket_id is not None:
        linked = await session.scalar(
            select(Ticket.reference).where(Ticket.id == ticket.linked_ticket_id)
        )
    detail["linked_to"] = linked
    org = None
    if ticket.organisation_id is not None:
        org = await session.get(Organisation, ticket.organisation_id)
    detail["organisation"] = (
        None if org is None else {"number": org.number, "name": org.name, "contract": org.contract}
    )
    detail["linked_from"] = list(
        await session.scalars(
            select(Ticket.reference).where(Ticket.linked_ticket_id == ticket.id).order_by(Ticket.id)
        )
    )
    articles = await session.scalars(
        select(Article).where(Article.ticket_id == ticket.id).order_by(Article.id)
    )
    by_article: dict[int, list[Attachment]] = defaultdict(list)
    for attachment in await ticket_attachments(session, ticket):
        by_article[attachment.article_id].append(attachment)
    detail["articles"] = [article_view(a, by_article.get(a.id)) for a in articles]
    bounces = list(
        await session.scalars(
            select(Bounce).where(Bounce.ticket_id == ticket.id).order_by(Bounce.id)
        )
    )
    detail["bounces"] = [bounce_view(b) for b in bounces]
    timers = await session.scalars(
        select(Timer).where(Timer.ticket_id == ticket.id).order_by(Timer.due_at, Timer.id)
    )
    detail["timers"] = [
        {"kind": t.kind, "due_at": iso(t.due_at), "fired_at": iso(t.fired_at), "outcome": t.outcome}
        for t in timers
    ]
    detail["bouncing"] = await bouncing(session, [ticket.requester, *detail["participants"]])
    history = await session.scalars(
        select(HistoryEntry).where(HistoryEntry.ticket_id == ticket.id).order_by(HistoryEntry.id)
    )
    detail["history"] = [history_view(h) for h in history]
    return detail


async def bouncing(session: AsyncSession, addresses: list[str]) -> list[str]:
    """Of these addresses, those whose last report was a permanent failure and who have
    not written to the desk since: mail to them is not arriving."""
    if not addresses:
        return []
    last_bounce = (
        select(Bounce.recipient, func.max(Bounce.at).label("at"))
        .where(Bounce.recipient.in_(addresses), Bounce.permanent)
        .group_by(Bounce.recipient)
        .subquery()
    )
    last_mail = (
        select(Article.author, func.max(Article.created_at).label("at"))
        .where(Article.author.in_(addresses), Article.direction == "in")
        .group_by(Article.author)
        .subquery()
    )
    rows = await session.scalars(
        select(last_bounce.c.recipient)
        .outerjoin(last_mail, last_mail.c.author == last_bounce.c.recipient)
        .where(or_(last_mail.c.at.is_(None), last_mail.c.at <= last_bounce.c.at))
    )
    found = set(rows)
    return [a for a in addresses if a in found]


def organisation_view(
    org: Organisation, domains: list[str], contacts: list[Contact] | None = None
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "number": org.number,
        "name": org.name,
        "contract": org.contract,
        "billing": org.billing,
        "included_hours": org.included_minutes / 60,
        "submission_fee": org.submission_fee_cents / 100,
        "sla_targets": own_targets(org),
        "domains": domains,
        "updated_at": iso(org.updated_at),
    }
    if contacts is not None:
        view["contacts"] = [
            {"address": c.address, "name": c.name, "language": c.language} for c in contacts
        ]
    return view


async def organisation_detail(session: AsyncSession, org: Organisation) -> dict[str, Any]:
    contacts = await session.scalars(
        select(Contact).where(Contact.organisation_id == org.id).order_by(Contact.address)
    )
    return organisation_view(org, await domains_of(session, org), list(contacts))


def outbox_view(row: OutboxMessage, reference: str | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "ticket": reference,
        "event": row.event,
        "to": row.recipient,
        "subject": row.subject,
        "state": row.state,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "message_id": row.message_id,
        "created_at": iso(row.created_at),
        "sent_at": iso(row.sent_at),
        "next_attempt_at": iso(row.next_attempt_at),
    }


def quarantine_view(row: QuarantinedMessage, *, full: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": row.id,
        "source": row.source,
        "stage": row.stage,
        "error": row.error,
        "state": row.state,
        "attempts": row.attempts,
        "size": row.size,
        "truncated": row.truncated,
        "sha256": row.sha256,
        "created_at": iso(row.created_at),
        "resolved_at": iso(row.resolved_at),
        "resolution": row.resolution,
    }
    if full:
        view["traceback"] = row.traceback
    return view
