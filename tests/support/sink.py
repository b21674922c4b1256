"""An SMTP sink (aiosmtpd) that keeps every message it receives, for the tests."""

from __future__ import annotations

import asyncio
import email
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    sender: str
    recipients: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed: EmailMessage = email.message_from_bytes(self.raw, policy=default)  # type: ignore[assignment]
        return parsed


@dataclass
class SmtpSink:
    """Accepts everything, or answers `reply` to DATA when it is set (e.g. '451 ...')."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Received] = field(default_factory=list)
    reply: str | None = None
    # Keep the message, then drop the connection before answering (a crash or a cut
    # cable at the worst moment for the sender).
    drop_after_data: bool = False
    refuse_recipients: str | None = None  # answer RCPT with this (e.g. '550 ...')
    _server: asyncio.Server | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.refuse_recipients is not None:
            return self.refuse_recipients
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.reply is not None:
            return self.reply
        raw = envelope.original_content or b""
        async with self._arrived:
            self.messages.append(Received(envelope.mail_from or "", list(envelope.rcpt_tos), raw))
            self._arrived.notify_all()
        if self.drop_after_data:
            server.transport.abort()  # type: ignore[union-attr]
        return "250 OK"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def factory() -> Any:
            return SMTP(self, hostname="sink.test", ident="test-sink")

        self._server = await loop.create_server(factory, host=self.host, port=self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait_for(self, count: int, within: float = 10.0) -> list[Received]:
        """Wait until at least `count` messages arrived; fail after `within` seconds."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.messages) >= count), within
            )
        return list(self.messages)

    def subjects(self) -> list[str]:
        return [str(m.message["Subject"]) for m in self.messages]
