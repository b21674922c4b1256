"""Logging: one line per event, as text for people or as key=value or JSON for machines.

Every line logged while a message is being taken in carries its Message-ID and, once
known, the ticket reference: the pipeline opens a message context (a contextvar, so
each task sees its own) and binds the fields as they become known; a logging filter
copies them onto each record and the formatters write them out.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Literal, TextIO

from gateway.config import LoggingSettings
from gateway.mail.text import message_ids

LogFormat = Literal["text", "keyvalue", "json"]

# The context fields, in the order they are written.
FIELDS = ("ref", "message_id", "source")

_CONTEXT: ContextVar[Mapping[str, str]] = ContextVar(
    "gateway_log_context", default=MappingProxyType({})
)


@contextmanager
def message_context(**fields: str | None) -> Iterator[None]:
    """Bind fields (ref, message_id, source) for every line logged inside the block, in
    this task; whatever is bound inside is dropped at the end of the block."""
    token = _CONTEXT.set(_merged(_CONTEXT.get(), fields))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def bind(**fields: str | None) -> None:
    """Add fields to the current context (a None value leaves a field as it is)."""
    _CONTEXT.set(_merged(_CONTEXT.get(), fields))


def current() -> Mapping[str, str]:
    """The fields bound now."""
    return _CONTEXT.get()


def _merged(base: Mapping[str, str], fields: Mapping[str, str | None]) -> Mapping[str, str]:
    extra = {key: value for key, value in fields.items() if value}
    return {**base, **extra} if extra else base


_HEAD_END = re.compile(rb"\r?\n\r?\n")
_MESSAGE_ID_HEADER = re.compile(
    rb"^message-id[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE
)


def header_message_id(raw: bytes) -> str | None:
    """The Message-ID of a raw message, from its header block only (for the log context
    before the message is parsed; the same form as the parsed one: no angle brackets)."""
    end = _HEAD_END.search(raw, 0, 256 * 1024)
    match = _MESSAGE_ID_HEADER.search(raw, 0, end.start() if end else min(len(raw), 256 * 1024))
    if match is None:
        return None
    value = match.group(1).decode("ascii", "replace")
    found = message_ids(value)
    return found[0][:200] if found else None


class ContextFilter(logging.Filter):
    """Copies the bound context fields onto each record (fields given with `extra=` win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _context_of(record: logging.LogRecord) -> list[tuple[str, str]]:
    pairs = []
    for key in FIELDS:
        value = getattr(record, key, None)
        if value:
            pairs.append((key, str(value)))
    return pairs


def _timestamp(record: logging.LogRecord) -> str:
    """ISO 8601 in UTC with milliseconds: 2026-03-02T09:30:00.123Z."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """For people: time, level, logger, message; context fields the message does not
    already name are added at the end."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        message = record.getMessage()
        extra = [f"{k}={v}" for k, v in _context_of(record) if f"{k}={v}" not in message]
        if not extra:
            return line
        # The fields go on the first line, before a traceback if there is one.
        first, newline, rest = line.partition("\n")
        return f"{first} {' '.join(extra)}{newline}{rest}"


_BARE = re.compile(r"^[^\s\"=\\\x00-\x1f\x7f]+$")


def logfmt_value(value: str) -> str:
    """A value as logfmt writes it: bare when it can be, else double-quoted with \\, "
    and control characters escaped (so one event stays one line)."""
    if _BARE.match(value):
        return value
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    escaped = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", lambda m: f"\\x{ord(m[0]):02x}", escaped)
    return f'"{escaped}"'


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    if record.exc_info:
        return formatter.formatException(record.exc_info)
    if record.exc_text:
        return record.exc_text
    return None


class KeyValueFormatter(logging.Formatter):
    """One `key=value` line per event: ts, level, logger, msg, the context fields, and
    exc (the traceback, escaped onto the same line) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        pairs = [
            ("ts", _timestamp(record)),
            ("level", record.levelname.lower()),
            ("logger", record.name),
            ("msg", record.getMessage()),
            *_context_of(record),
        ]
        exc = _exception_text(self, record)
        if exc:
            pairs.append(("exc", exc))
        return " ".join(f"{key}={logfmt_value(value)}" for key, value in pairs)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the context fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, str] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **dict(_context_of(record)),
        }
        exc = _exception_text(self, record)
        if exc:
            event["exc"] = exc
        return json.dumps(event, ensure_ascii=False)


def make_formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "keyvalue":
        return KeyValueFormatter()
    return TextFormatter()


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is at the time (as logging's last resort does)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def make_handler(log_format: LogFormat, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing `log_format` lines, with the message context on each line."""
    handler: logging.Handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(ContextFilter())
    return handler


def configure_logging(settings: LoggingSettings) -> None:
    """Log to stderr (the journal under systemd) at `settings.level` in `settings.format`;
    called at start and again on reload, which may change both.

    As logging.basicConfig does, this leaves logging alone when something else (an
    application embedding the gateway, a test runner) has configured it already.
    """
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, _StderrHandler)]
    if len(ours) != len(root.handlers):
        return
    if ours:
        ours[0].setFormatter(make_formatter(settings.format))
    else:
        root.addHandler(make_handler(settings.format))
    root.setLevel(settings.level.upper())
    # aiosmtpd logs every SMTP command at INFO; keep its chatter for debug runs.
    chatter = logging.NOTSET if settings.level == "debug" else logging.WARNING
    logging.getLogger("mail.log").setLevel(chatter)
