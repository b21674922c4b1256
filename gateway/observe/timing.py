"""How long the pipeline takes per message, into the histogram of its own daemon.

The pipeline times each message with `processing_time(self)`; the daemon's metrics
register their histogram for its pipeline. A pipeline nobody registered (a CLI command,
a test) is timed into nothing. Kept free of gateway imports: the pipeline imports it.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Observer(Protocol):
    def observe(self, amount: float) -> None: ...


_OBSERVERS: weakref.WeakKeyDictionary[object, Observer] = weakref.WeakKeyDictionary()


def register(owner: object, observer: Observer) -> None:
    """Time `owner`'s messages into `observer` (a prometheus Histogram)."""
    _OBSERVERS[owner] = observer


@contextmanager
def processing_time(owner: object) -> Iterator[None]:
    """Observe the seconds the block takes, when it ends without an exception."""
    observer = _OBSERVERS.get(owner)
    if observer is None:
        yield
        return
    started = time.perf_counter()
    yield
    observer.observe(time.perf_counter() - started)
