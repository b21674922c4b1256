"""/healthz: is the daemon doing its work? The database, the mailboxes, the outbox.

- failing (503): the database does not answer (or its SQLite file is gone): nothing
  can be taken in or sent.
- degraded (503): the daemon works but part of the mail does not flow: a mailbox is
  not connected (it is retrying; one that another daemon reads is fine), or a
  notification has been due for longer than `http.outbox_max_age_seconds`.
- ok (200): everything else.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from gateway.observe.probes import PROBE_SECONDS, outbox_summary, probe_database
from gateway.observe.sources import Observed


@dataclass(frozen=True)
class Health:
    status: str  # ok | degraded | failing
    body: dict[str, Any]

    @property
    def http_status(self) -> int:
        return 200 if self.status == "ok" else 503


async def check_health(gateway: Observed) -> Health:
    problems: list[str] = []
    database = await probe_database(gateway.engine)
    outbox: dict[str, Any] = {"depth": None, "oldest_age_seconds": None}
    if database.reachable:
        now = gateway.relay.clock()
        try:
            async with asyncio.timeout(PROBE_SECONDS), gateway.sessions() as session:
                summary = await outbox_summary(session, now)
        except Exception as exc:  # answered SELECT 1, then failed: count it as unreachable
            database = database.__class__(False, None, f"{type(exc).__name__}: {exc}"[:300])
        else:
            age = summary.oldest_age_seconds(now)
            outbox = {"depth": summary.depth, "oldest_age_seconds": age}
            limit = gateway.settings.http.outbox_max_age_seconds
            if age > limit:
                problems.append(
                    f"outbox: a notification has been due for {age:.0f} s (limit {limit:g} s)"
                )
    if not database.reachable:
        problems.insert(0, f"database: {database.error}")
    mailboxes: dict[str, Any] = {}
    for mailbox in gateway.mailboxes:
        name = mailbox.settings.name
        mailboxes[name] = {
            "connected": mailbox.connected,
            "failures": mailbox.health.failures,
            "standby": mailbox.standing_by,
        }
        if not mailbox.connected and not mailbox.standing_by:
            trouble = mailbox.health.trouble or "not connected yet"
            problems.append(f"mailbox {name}: {trouble}")
    status = "failing" if not database.reachable else "degraded" if problems else "ok"
    body = {
        "status": status,
        "database": database.as_dict(),
        "mailboxes": mailboxes,
        "outbox": outbox,
        "problems": problems,
    }
    return Health(status, body)
