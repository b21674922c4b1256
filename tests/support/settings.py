"""Settings and config files for tests, close to the shipped demo config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.config import Settings

TEAMS: list[dict[str, Any]] = [
    {"key": "noc", "name": "Network Operations Center (NOC)", "address": "noc@vtm.example",
     "phone": "0174 75 26 90", "notify": ["noc-team@vtm.example"]},
    {"key": "business", "name": "Business Servicedesk", "address": "business@vtm.example",
     "phone": "0174 52 73 20", "default": True},
    {"key": "iot", "name": "IoT / M2M Desk", "address": "iot@vtm.example",
     "phone": "0174 22 66 92"},
]  # fmt: skip


def settings_dict(
    db_url: str,
    *,
    sink_port: int | None = None,
    maildir: Path | None = None,
    mailboxes: list[dict[str, Any]] | None = None,
    listeners: list[dict[str, Any]] | None = None,
    sections: dict[str, Any] | None = None,
    **desk: Any,
) -> dict[str, Any]:
    """A config as a dict: `desk` keys as keyword arguments, other tables in `sections`."""
    outbound: dict[str, Any]
    if maildir is not None:
        outbound = {"transport": "maildir", "maildir": str(maildir)}
    else:
        outbound = {"transport": "smtp", "host": "127.0.0.1", "port": sink_port or 25,
                    "timeout_seconds": 5}  # fmt: skip
    return {
        "desk": {"reference_prefix": "VTM", "sender": "servicedesk@vtm.example", **desk},
        "database": {"url": db_url},
        "teams": TEAMS,
        "mailboxes": mailboxes or [],
        "listeners": listeners or [],
        "outbound": outbound,
        **(sections or {}),
    }


def make_settings(db_url: str, **kwargs: Any) -> Settings:
    return Settings.model_validate(settings_dict(db_url, **kwargs))


def imap_mailbox(account: Any, name: str = "desk", **extra: Any) -> dict[str, Any]:
    return {"name": name, "host": account.host, "port": account.port, "security": "none",
            "username": account.username, "password": account.password, "poll_seconds": 1,
            **extra}  # fmt: skip


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for the shapes our config uses (tables, arrays of tables)."""
    lines: list[str] = []
    for section, body in data.items():
        tables = body if isinstance(body, list) else [body]
        for table in tables:
            lines.append(f"[[{section}]]" if isinstance(body, list) else f"[{section}]")
            lines.extend(f"{key} = {_toml_value(value)}" for key, value in table.items())
            lines.append("")
    return "\n".join(lines)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
