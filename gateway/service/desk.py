"""What every service function needs: the desk (settings, renderer) and its errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.config import Settings
from gateway.domain.access import AccessPolicy
from gateway.domain.calendar import BusinessCalendar
from gateway.domain.msgid import MessageIdSigner
from gateway.notify.render import Renderer
from gateway.store.secrets import shared_secret

SYSTEM = "system"
MAX_REFERENCES = 10
MESSAGE_ID_KEY = "message_id_key"


class TicketError(Exception):
    """A request the service refuses; the message says why, for the person who asked."""


class UnknownTicket(TicketError):
    pass


class StatusRefused(TicketError):
    """A status change the transition table does not have (the message says which are)."""


def _read_key(path: str) -> bytes:
    return Path(path).read_bytes().strip()


class MessageIds:
    """The signer of our Message-IDs, made on first use.

    The key comes from `security.message_id_key_file`, else from the database (made by
    the migration, so every daemon on one database signs alike).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._signer: MessageIdSigner | None = None

    async def signer(self, session: AsyncSession) -> MessageIdSigner:
        if self._signer is not None:
            return self._signer
        security = self._settings.security
        previous = [_read_key(p) for p in security.previous_message_id_key_files]
        committed = True
        if security.message_id_key_file:
            current = _read_key(security.message_id_key_file)
        else:
            current, committed = await shared_secret(session, MESSAGE_ID_KEY)
        signer = MessageIdSigner([current, *previous], self._settings.desk_domain)
        if committed:
            self._signer = signer
        return signer


@dataclass(frozen=True)
class Desk:
    """What the service needs besides a session: settings and the template renderer."""

    settings: Settings
    renderer: Renderer
    message_ids: MessageIds = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "message_ids", MessageIds(self.settings))

    @cached_property
    def access(self) -> AccessPolicy:
        access = self.settings.access
        return AccessPolicy.build(access.agents, access.organisations, access.same_domain)

    @cached_property
    def calendar(self) -> BusinessCalendar:
        return self.settings.calendar.calendar()

    @property
    def domain(self) -> str:
        return self.settings.desk_domain

    @property
    def loop_token(self) -> str:
        return self.settings.desk.sender
