"""Waiting in the daemon's loops: for something to do, until stopped, or a while."""

from __future__ import annotations

import asyncio


async def until(stop: asyncio.Event, seconds: float | None, *events: asyncio.Event) -> None:
    """Until `stop` or one of `events` is set, or `seconds` have passed (None: no limit).
    With no events this is a sleep that a stop cuts short."""
    waiters = {asyncio.ensure_future(e.wait()) for e in (stop, *events)}
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
