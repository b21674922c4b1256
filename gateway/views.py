"""Read models: tickets as plain dicts for the CLI's JSON (and later the portal)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.service import participants_of
from gateway.store.models import Article, HistoryEntry, OutboxMessage, QuarantinedMessage, Ticket


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
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "closed_at": iso(ticket.closed_at),
        "scheduled_for": iso(ticket.scheduled_for),
        "article_count": ticket.article_count,
    }


def article_view(article: Article) -> dict[str, Any]:
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
    detail["linked_from"] = list(
        await session.scalars(
            select(Ticket.reference).where(Ticket.linked_ticket_id == ticket.id).order_by(Ticket.id)
        )
    )
    articles = await session.scalars(
        select(Article).where(Article.ticket_id == ticket.id).order_by(Article.id)
    )
    detail["articles"] = [article_view(a) for a in articles]
    history = await session.scalars(
        select(HistoryEntry).where(HistoryEntry.ticket_id == ticket.id).order_by(HistoryEntry.id)
    )
    detail["history"] = [history_view(h) for h in history]
    return detail


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
