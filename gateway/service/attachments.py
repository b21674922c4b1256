"""Attachments of incoming mail: content stored once per SHA-256, limits applied."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.mail.attachments import MailAttachment
from gateway.service.desk import Desk, TicketError
from gateway.store import prepared
from gateway.store.db import dialect_of
from gateway.store.models import Article, Attachment, AttachmentBlob, Ticket


class UnknownAttachment(TicketError):
    pass


# Signatures of signed mail (S/MIME, PGP): part of the transport, not of the matter.
SIGNATURE_TYPES = frozenset(
    {"application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature"}
)


def _refusal(desk: Desk, part: MailAttachment, kept_so_far: int) -> str | None:
    limits = desk.settings.attachments
    if part.size > limits.max_attachment_bytes:
        return f"larger than {limits.max_attachment_bytes} bytes"
    if kept_so_far + part.size > limits.max_message_attachment_bytes:
        return (
            f"the message's attachments together pass {limits.max_message_attachment_bytes} bytes"
        )
    return None


async def store_attachments(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    article: Article,
    parts: Sequence[MailAttachment],
) -> list[Attachment]:
    """Keep each attachment on the article; returns those refused (over a limit),
    which are recorded with name, type and size but without content."""
    parts = [p for p in parts if p.content_type not in SIGNATURE_TYPES]
    if not parts:
        return []
    if article.id is None:
        await session.flush()
    kept = 0
    refused: list[Attachment] = []
    for part in parts:
        digest = hashlib.sha256(part.data).hexdigest()
        why = _refusal(desk, part, kept)
        if why is None:
            kept += part.size
            await prepared.execute(
                session,
                prepared.insert_or_skip(dialect_of(session), AttachmentBlob),
                {"sha256": digest, "size": part.size, "data": part.data},
            )
        row = Attachment(
            ticket_id=ticket.id,
            article_id=article.id,
            filename=part.filename,
            content_type=part.content_type[:255],
            size=part.size,
            disposition=part.disposition,
            content_id=part.content_id,
            is_message=part.is_message,
            sha256=digest,
            refused=why,
        )
        await prepared.add(session, row)
        if why is not None:
            refused.append(row)
    return refused


async def ticket_attachments(session: AsyncSession, ticket: Ticket) -> list[Attachment]:
    rows = await session.scalars(
        select(Attachment).where(Attachment.ticket_id == ticket.id).order_by(Attachment.id)
    )
    return list(rows)


async def attachment_content(session: AsyncSession, attachment_id: int) -> tuple[Attachment, bytes]:
    """An attachment and its content; UnknownAttachment when there is none to give."""
    row = await session.get(Attachment, attachment_id)
    if row is None:
        raise UnknownAttachment(f"no attachment {attachment_id}")
    if row.refused is not None:
        raise UnknownAttachment(
            f"attachment {attachment_id} ({row.filename}) was not kept: {row.refused}"
        )
    data = await session.scalar(
        select(AttachmentBlob.data).where(AttachmentBlob.sha256 == row.sha256)
    )
    if data is None:
        raise UnknownAttachment(f"the content of attachment {attachment_id} is missing")
    return row, data
