"""What every service function needs: the desk (settings, renderer) and its errors."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import Settings
from gateway.notify.render import Renderer

SYSTEM = "system"
MAX_REFERENCES = 10


class TicketError(Exception):
    """A request the service refuses; the message says why, for the person who asked."""


class UnknownTicket(TicketError):
    pass


@dataclass(frozen=True)
class Desk:
    """What the service needs besides a session: settings and the template renderer."""

    settings: Settings
    renderer: Renderer

    @property
    def domain(self) -> str:
        return self.settings.desk.sender.rpartition("@")[2]

    @property
    def loop_token(self) -> str:
        return self.settings.desk.sender
