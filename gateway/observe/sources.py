"""What the endpoint looks at: the running daemon's parts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.config import Settings
from gateway.intake.imap import ImapMailbox
from gateway.outbox import Relay, RelayStats
from gateway.pipeline import Pipeline


class Observed(Protocol):
    """The parts of a daemon (app.Gateway) that /healthz and /metrics read."""

    @property
    def settings(self) -> Settings: ...
    @property
    def engine(self) -> AsyncEngine: ...
    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]: ...
    @property
    def pipeline(self) -> Pipeline: ...
    @property
    def relay(self) -> Relay: ...
    @property
    def relay_totals(self) -> RelayStats: ...
    @property
    def mailboxes(self) -> Sequence[ImapMailbox]: ...
