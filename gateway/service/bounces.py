"""Delivery failure reports: tied to the notification and ticket they are about."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.mail.bounce import Bounce as BounceReport
from gateway.service.desk import SYSTEM, Desk
from gateway.service.tickets import record
from gateway.store.models import Bounce, OutboxMessage, Ticket


async def _notification(session: AsyncSession, report: BounceReport) -> OutboxMessage | None:
    """Our outbox row the report is about: its Message-ID, or the envelope id we sent."""
    ids = [*report.original_ids, *([report.envelope_id] if report.envelope_id else [])][:50]
    if not ids:
        return None
    rows = {
        row.message_id: row
        for row in await session.scalars(
            select(OutboxMessage).where(OutboxMessage.message_id.in_(ids))
        )
    }
    return next((rows[mid] for mid in ids if mid in rows), None)


async def record_bounce(
    session: AsyncSession, desk: Desk, report: BounceReport, *, inbound_id: int, now: datetime
) -> Ticket | None:
    """Record each failed recipient; mark the notification and the ticket it is about.

    Returns that ticket, or None when the report names none of ours (it is recorded all
    the same: the recipient is bouncing either way). A bounce never opens a ticket.
    """
    row = await _notification(session, report)
    ticket: Ticket | None = None
    if row is not None and row.ticket_id is not None:
        ticket = await session.get(Ticket, row.ticket_id)
    else:
        signer = await desk.message_ids.signer(session)
        for mid in report.original_ids:
            own = signer.verify(mid)
            if own is not None and own.reference is not None:
                ticket = await session.scalar(
                    select(Ticket).where(Ticket.reference == own.reference)
                )
                if ticket is not None:
                    break
    for failed in report.recipients:
        about_row = row is not None and (
            row.recipient == failed.address or len(report.recipients) == 1
        )
        session.add(
            Bounce(
                inbound_id=inbound_id,
                outbox_id=row.id if about_row and row is not None else None,
                ticket_id=None if ticket is None else ticket.id,
                recipient=failed.address,
                status=failed.status,
                action=failed.action,
                permanent=failed.permanent,
                diagnostic=failed.diagnostic[:500],
                at=now,
            )
        )
        what = f"{failed.address}: {failed.action} {failed.status or ''}".strip()
        if ticket is not None:
            await record(
                session,
                ticket,
                "bounce",
                None,
                what,
                by=SYSTEM,
                now=now,
                reason=failed.diagnostic or None,
            )
        if about_row and row is not None and failed.action == "failed":
            row.last_error = f"bounced: {what} {failed.diagnostic}".strip()[:2000]
    return ticket
