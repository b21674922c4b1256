"""Queries the integration tests use to look at what the gateway wrote."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from gateway.app import Gateway
from gateway.service import get_ticket
from gateway.store.models import (
    Article,
    InboundMessage,
    OutboxMessage,
    QuarantinedMessage,
    Ticket,
)
from gateway.views import ticket_detail


async def count(gateway: Gateway, model: Any) -> int:
    async with gateway.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def counts(gateway: Gateway) -> dict[str, int]:
    return {
        "tickets": await count(gateway, Ticket),
        "articles": await count(gateway, Article),
        "inbound": await count(gateway, InboundMessage),
        "outbox": await count(gateway, OutboxMessage),
        "quarantine": await count(gateway, QuarantinedMessage),
    }


async def detail(gateway: Gateway, reference: str) -> dict[str, Any]:
    async with gateway.sessions() as session:
        return await ticket_detail(session, await get_ticket(session, reference))


async def outbox_rows(gateway: Gateway) -> list[OutboxMessage]:
    async with gateway.sessions() as session:
        return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


async def only_reference(gateway: Gateway) -> str:
    async with gateway.sessions() as session:
        refs = list(await session.scalars(select(Ticket.reference)))
    assert len(refs) == 1, refs
    return refs[0]
