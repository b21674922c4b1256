"""SMTP and LMTP listeners (aiosmtpd): the desk's addresses, served to an MTA or the demo.

The reply to DATA is given only after the message is committed (or quarantined): 250
means the desk has it. A temporary database failure answers 451 so the client keeps
the message and retries. LMTP (RFC 2033) answers once per accepted recipient; the
message is taken in once for all of them, so the answers agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import weakref
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.config import ListenerSettings
from gateway.pipeline import Pipeline, TemporaryFailure

log = logging.getLogger(__name__)


class DeskHandler:
    def __init__(self, pipeline: Pipeline, settings: ListenerSettings, source: str) -> None:
        self._pipeline = pipeline
        self._settings = settings
        self._source = source
        self._in_hand = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        allowed = self._settings.recipients
        if allowed and address.lower() not in allowed:
            return "550 5.1.1 No such recipient here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        recipients = [str(r).lower() for r in envelope.rcpt_tos]
        self._in_hand += 1
        self.idle.clear()
        try:
            outcome = await self._pipeline.ingest(raw, self._source, envelope_recipients=recipients)
        except TemporaryFailure as exc:
            log.error("%s: temporary failure, asking the client to retry: %s", self._source, exc)
            reply = "451 4.3.0 Temporary failure, please try again later"
        else:
            what = f"{outcome.kind} {outcome.reference}" if outcome.reference else outcome.kind
            reply = f"250 2.0.0 Accepted ({what})"
        finally:
            self._in_hand -= 1
            if not self._in_hand:
                self.idle.set()
        if self._settings.kind == "lmtp":
            return "\r\n".join(reply for _ in recipients)
        return reply


class SmtpListener:
    def __init__(self, settings: ListenerSettings, pipeline: Pipeline) -> None:
        self.settings = settings
        where = settings.path or f"{settings.host}:{settings.port}"
        self.source = f"{settings.kind}:{where}"
        self._handler = DeskHandler(pipeline, settings, self.source)
        self._server: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        assert self._server is not None
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self.settings
        protocol = LMTP if settings.kind == "lmtp" else SMTP

        def factory() -> Any:
            session = protocol(
                self._handler,
                data_size_limit=settings.max_message_bytes,
                enable_SMTPUTF8=True,
                ident="ticket-gateway",
            )
            self._sessions.add(session)
            return session

        if settings.path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(settings.path)  # a socket left by a daemon that died
            self._server = await loop.create_unix_server(factory, path=settings.path)
            log.info("%s listener on %s", settings.kind, settings.path)
        else:
            self._server = await loop.create_server(factory, host=settings.host, port=settings.port)
            log.info("%s listener on %s:%s", settings.kind, settings.host, self.port)

    async def stop(self) -> None:
        """Stop accepting connections; a message in hand is still committed and answered,
        then open connections are closed (a client in the middle of sending has no 250
        and sends again later)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._handler.idle.wait()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        if self.settings.path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.settings.path)
