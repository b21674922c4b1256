"""The floor: the least work any gateway with our guarantees does per message, with the
same libraries, measured next to the ceiling in bench/ingest.py.

The ceiling (a bare aioimaplib FETCH + `email` parse loop) says how fast mail can be
read. A gateway must also, for every message: keep it durably (one transaction), render
and send a notification, and record that it was sent. This loop does exactly that and
nothing else (no customer look-up, reference number, SLA timers, history, rate limits,
attachments, quote stripping, loop or stranger checks):

  - the same bounded UID FETCH ranges and `email.message_from_bytes(policy=default)`;
  - from, subject, Message-ID and the text body read from the parsed message;
  - one transaction writing the message and its notification (rendered with Jinja2);
  - the notification sent over one SMTP connection (aiosmtplib) to the sink by a task
    of its own, as the relay does, and a second transaction marking it sent;
  - the group's UIDs flagged \\Seen with one UID STORE.

SQLite: sqlite3 on the loop's thread with WAL and synchronous=NORMAL, as the gateway
(checkpoints off for the run); PostgreSQL: asyncpg, one connection for the intake and
one for the sender. Its own two tables in the scratch database, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import email
import sqlite3
import time
from dataclasses import dataclass
from email.policy import default
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import asyncpg
import jinja2

from bench.harness import open_inbox
from gateway.intake.imap import parse_fetch, uid_ranges, uid_set
from tests.support.databases import asyncpg_dsn
from tests.support.dovecot import ImapAccount

TEMPLATE = jinja2.Environment(autoescape=False).from_string(
    "Beste {{ name }},\n\nWe hebben uw bericht \u201c{{ subject }}\u201d ontvangen en "
    "nemen het in behandeling.\n\nMet vriendelijke groet,\nVTM Business Servicedesk\n"
)
TABLES = (
    "CREATE TABLE floor_messages (id {pk}, message_id TEXT UNIQUE, sender TEXT, "
    "subject TEXT, body TEXT)",
    "CREATE TABLE floor_outbox (id {pk}, message_id INTEGER, recipient TEXT, body TEXT, "
    "state TEXT)",
)
DESK = "business@vtm.example"


@dataclass
class Incoming:
    message_id: str
    sender: str
    name: str
    subject: str
    body: str


def read(raw: bytes) -> Incoming:
    msg = email.message_from_bytes(raw, policy=default)
    # The address as written (ASCII, as the gateway keeps it; the parsed header would
    # decode an encoded-word some clients put in the local part).
    raw_from = next((v for k, v in msg.raw_items() if k.lower() == "from"), "")
    name, address = email.utils.parseaddr(str(raw_from))
    part = msg.get_body(("plain", "html"))
    body = part.get_content() if part is not None else ""
    return Incoming(
        message_id=str(msg["Message-ID"] or ""),
        sender=address,
        name=name,
        subject=str(msg["Subject"] or ""),
        body=body,
    )


def notification(mail: Incoming) -> bytes:
    """The notification for the sink."""
    text = TEMPLATE.render(name=mail.name or mail.sender, subject=mail.subject)
    message_id = make_msgid(domain="vtm.example")
    head = (
        f"From: VTM Business Servicedesk <{DESK}>\r\nTo: {mail.sender}\r\n"
        f"Subject: Re: {mail.subject}\r\nMessage-ID: {message_id}\r\n"
        f"In-Reply-To: {mail.message_id}\r\n"
        f"Date: {format_datetime(email.utils.localtime())}\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    return (head + text.replace("\n", "\r\n")).encode()


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        # The least work: no checkpoints at all during the run (the gateway runs them
        # in a thread of its own).
        self.db.execute("PRAGMA wal_autocheckpoint=0")
        for table in TABLES:
            self.db.execute(table.format(pk="INTEGER PRIMARY KEY"))

    async def keep(self, mail: Incoming, recipient: str, body: str) -> int:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        cursor = db.execute(
            "INSERT INTO floor_messages (message_id, sender, subject, body) VALUES (?,?,?,?)",
            (mail.message_id, mail.sender, mail.subject, mail.body),
        )
        cursor = db.execute(
            "INSERT INTO floor_outbox (message_id, recipient, body, state) "
            "VALUES (?,?,?,'pending')",
            (cursor.lastrowid, recipient, body),
        )
        db.execute("COMMIT")
        return int(cursor.lastrowid or 0)

    async def sent(self, outbox_id: int) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE floor_outbox SET state = 'sent' WHERE id = ?", (outbox_id,))
        db.execute("COMMIT")

    async def close(self) -> None:
        for table in ("floor_messages", "floor_outbox"):
            self.db.execute(f"DROP TABLE {table}")
        self.db.close()


class PostgresStore:
    intake: Any
    sender: Any

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        store = cls()
        store.intake = await asyncpg.connect(asyncpg_dsn(url))
        store.sender = await asyncpg.connect(asyncpg_dsn(url))
        for table in TABLES:
            await store.intake.execute(table.format(pk="BIGSERIAL PRIMARY KEY"))
        return store

    async def keep(self, mail: Incoming, recipient: str, body: str) -> int:
        async with self.intake.transaction():
            message = await self.intake.fetchval(
                "INSERT INTO floor_messages (message_id, sender, subject, body) "
                "VALUES ($1,$2,$3,$4) RETURNING id",
                mail.message_id,
                mail.sender,
                mail.subject,
                mail.body,
            )
            outbox_id = await self.intake.fetchval(
                "INSERT INTO floor_outbox (message_id, recipient, body, state) "
                "VALUES ($1,$2,$3,'pending') RETURNING id",
                message,
                recipient,
                body,
            )
        return int(outbox_id)

    async def sent(self, outbox_id: int) -> None:
        async with self.sender.transaction():
            await self.sender.execute(
                "UPDATE floor_outbox SET state = 'sent' WHERE id = $1", outbox_id
            )

    async def close(self) -> None:
        await self.intake.execute("DROP TABLE floor_messages, floor_outbox")
        await self.intake.close()
        await self.sender.close()


async def floor(
    account: ImapAccount, batch: int, backend: str, url: str, workdir: Path, sink_port: int
) -> float:
    """Seconds for the floor loop to take in every message of the mailbox and have each
    notification accepted by the sink and recorded as sent."""
    store: SqliteStore | PostgresStore
    if backend == "sqlite":
        store = SqliteStore(workdir / "floor.db")
    else:
        store = await PostgresStore.open(url)
    queue: asyncio.Queue[tuple[int, str, bytes] | None] = asyncio.Queue()
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink_port, timeout=60)

    async def send() -> int:
        count = 0
        while (item := await queue.get()) is not None:
            outbox_id, recipient, message = item
            await smtp.mail(DESK)  # MAIL, RCPT, DATA as the gateway's relay sends
            await smtp.rcpt(recipient)
            await smtp.data(message)
            await store.sent(outbox_id)
            count += 1
        return count

    try:
        start = time.perf_counter()
        await smtp.connect()
        sender = asyncio.create_task(send())
        client, uids = await open_inbox(account)
        taken = 0
        for chunk in uid_ranges(uids, batch):
            fetched = await client.uid("fetch", uid_set(chunk), "(UID BODY.PEEK[])")
            for _uid, raw in parse_fetch(fetched.lines):
                mail = read(raw)
                message = notification(mail)
                outbox_id = await store.keep(mail, mail.sender, message.decode())
                queue.put_nowait((outbox_id, mail.sender, message))
                taken += 1
            await client.uid("store", uid_set(chunk), "+FLAGS.SILENT (\\Seen)")
        queue.put_nowait(None)
        sent = await sender
        elapsed = time.perf_counter() - start
        await client.logout()
        await smtp.quit()
        assert taken == sent == len(uids), (taken, sent, len(uids))
        return elapsed
    finally:
        await store.close()
