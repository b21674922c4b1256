"""SMTP listener (aiosmtpd): a desk address anyone on loopback can mail.

The reply to DATA is given only after the message is committed (or quarantined): 250
means the desk has it. A temporary database failure answers 451 so the client retries.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.config import ListenerSettings
from gateway.pipeline import Pipeline, TemporaryFailure

log = logging.getLogger(__name__)


class DeskHandler:
    def __init__(self, pipeline: Pipeline, source: str) -> None:
        self._pipeline = pipeline
        self._source = source

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        recipients = [str(r).lower() for r in envelope.rcpt_tos]
        try:
            outcome = await self._pipeline.ingest(raw, self._source, envelope_recipients=recipients)
        except TemporaryFailure as exc:
            log.error("smtp listener: temporary failure, asking the client to retry: %s", exc)
            return "451 4.3.0 Temporary failure, please try again later"
        what = f"{outcome.kind} {outcome.reference}" if outcome.reference else outcome.kind
        return f"250 2.0.0 Accepted ({what})"


class SmtpListener:
    def __init__(self, settings: ListenerSettings, pipeline: Pipeline) -> None:
        self.settings = settings
        self._handler = DeskHandler(pipeline, f"smtp:{settings.host}:{settings.port}")
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        assert self._server is not None
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self.settings

        def factory() -> Any:
            return SMTP(
                self._handler,
                data_size_limit=settings.max_message_bytes,
                enable_SMTPUTF8=True,
                ident="ticket-gateway",
            )

        self._server = await loop.create_server(factory, host=settings.host, port=settings.port)
        log.info("smtp listener on %s:%s", settings.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
