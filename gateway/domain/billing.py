"""Time registration and the reports made from it: billing per customer, SLA per team.

Pure: rows in, report values out. Minutes are whole numbers throughout; hours appear
only when a report is shown, so totals always add up.

Billing (PROCESS.md): warranty and SLA-covered time are never charged. Billable time is
invoiced for `invoice` customers; for `sla_settlement` customers it first uses the
hours their SLA includes for the month, and only the rest (the overage) is invoiced.
Submitting a ticket may cost a fee per ticket (the customer's `submission_fee`).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum


class TimeKind(StrEnum):
    WARRANTY = "warranty"  # work under warranty: not charged
    SLA = "sla"  # repair covered by the SLA: not charged
    BILLABLE = "billable"


MAX_ENTRY_MINUTES = 24 * 60
_DURATION = re.compile(
    r"^\s*(?:(?P<h>\d+(?:[.,]\d+)?)\s*h)?\s*(?:(?P<m>\d+)\s*m(?:in)?)?\s*$", re.IGNORECASE
)
_CLOCK = re.compile(r"^\s*(?P<h>\d+):(?P<m>[0-5]\d)\s*$")


def parse_duration(text: str) -> int:
    """Minutes from "45m", "1h", "1h30m", "1.5h", "1,5h", "1:30" or "90" (minutes)."""
    text = text.strip()
    minutes: float
    if text.isdigit():
        minutes = int(text)
    elif found := _CLOCK.match(text):
        minutes = int(found["h"]) * 60 + int(found["m"])
    elif (found := _DURATION.match(text)) and (found["h"] or found["m"]):
        hours = float((found["h"] or "0").replace(",", "."))
        minutes = hours * 60 + int(found["m"] or 0)
    else:
        raise ValueError(f"not a duration: {text!r} (try 45m, 1h30m, 1.5h or 1:30)")
    whole = round(minutes)
    if not 0 < whole <= MAX_ENTRY_MINUTES:
        raise ValueError(f"a time entry is 1 minute to 24 hours (got {text!r})")
    return whole


def month_bounds(period: str) -> tuple[date, date]:
    """`2026-11` -> (1 Nov 2026, 1 Dec 2026): the first day in, the first day after."""
    found = re.fullmatch(r"(\d{4})-(\d{2})", period.strip())
    if found is None or not 1 <= int(found[2]) <= 12:
        raise ValueError(f"a period is a month as YYYY-MM (got {period!r})")
    year, month = int(found[1]), int(found[2])
    first = date(year, month, 1)
    return first, date(year + month // 12, month % 12 + 1, 1)


@dataclass
class TicketTime:
    reference: str
    subject: str
    minutes: dict[TimeKind, int] = field(default_factory=lambda: dict.fromkeys(TimeKind, 0))

    @property
    def charged(self) -> int:
        return self.minutes[TimeKind.BILLABLE]


@dataclass
class CustomerBill:
    """One customer's month: time per ticket, what the SLA includes, what is invoiced."""

    number: str
    name: str
    billing: str  # invoice | sla_settlement
    included_minutes: int
    submission_fee_cents: int
    tickets_submitted: int
    tickets: list[TicketTime] = field(default_factory=list)

    def total(self, kind: TimeKind) -> int:
        return sum(t.minutes[kind] for t in self.tickets)

    @property
    def not_charged_minutes(self) -> int:
        return self.total(TimeKind.WARRANTY) + self.total(TimeKind.SLA)

    @property
    def included_used_minutes(self) -> int:
        if self.billing != "sla_settlement":
            return 0
        return min(self.total(TimeKind.BILLABLE), self.included_minutes)

    @property
    def invoiced_minutes(self) -> int:
        """Billable time to invoice: all of it, or what passes the included hours."""
        return self.total(TimeKind.BILLABLE) - self.included_used_minutes

    @property
    def submission_fees_cents(self) -> int:
        return self.tickets_submitted * self.submission_fee_cents


@dataclass(frozen=True)
class TimeRow:
    """One time entry with the ticket and customer it belongs to."""

    customer: str  # customer number; "-" for tickets without an organisation
    reference: str
    subject: str
    kind: TimeKind
    minutes: int


def bills(customers: Sequence[CustomerBill], rows: Iterable[TimeRow]) -> list[CustomerBill]:
    """The customers' bills filled with the time rows; customers with neither time nor
    fees are left out."""
    by_number = {c.number: c for c in customers}
    tickets: dict[tuple[str, str], TicketTime] = {}
    for row in rows:
        bill = by_number.get(row.customer)
        if bill is None:
            continue
        key = (row.customer, row.reference)
        if key not in tickets:
            tickets[key] = TicketTime(row.reference, row.subject)
            bill.tickets.append(tickets[key])
        tickets[key].minutes[row.kind] += row.minutes
    for bill in customers:
        bill.tickets.sort(key=lambda t: t.reference)
    return [c for c in customers if c.tickets or c.submission_fees_cents]


@dataclass(frozen=True)
class SlaRow:
    team: str
    priority: int | None
    created_at: datetime
    first_response_at: datetime | None
    first_response_due: datetime | None
    closed_at: datetime | None
    resolution_due: datetime | None


@dataclass
class SlaLine:
    team: str
    priority: int | None
    tickets: int = 0
    first_response_met: int = 0
    first_response_breached: int = 0
    resolution_met: int = 0
    resolution_breached: int = 0
    first_response_hours: list[float] = field(default_factory=list)
    resolution_hours: list[float] = field(default_factory=list)

    @property
    def median_first_response_hours(self) -> float | None:
        return _median(self.first_response_hours)

    @property
    def median_resolution_hours(self) -> float | None:
        return _median(self.resolution_hours)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


def _verdict(done: datetime | None, due: datetime | None, now: datetime) -> str | None:
    """met, breached, or None (no target, or still in time)."""
    if due is None:
        return None
    if done is not None:
        return "met" if done <= due else "breached"
    return "breached" if now > due else None


def sla_report(rows: Iterable[SlaRow], now: datetime) -> list[SlaLine]:
    """Per team and priority: targets met and breached, median times (clock hours)."""
    lines: dict[tuple[str, int | None], SlaLine] = {}
    for row in rows:
        line = lines.setdefault((row.team, row.priority), SlaLine(row.team, row.priority))
        line.tickets += 1
        first = _verdict(row.first_response_at, row.first_response_due, now)
        resolution = _verdict(row.closed_at, row.resolution_due, now)
        line.first_response_met += first == "met"
        line.first_response_breached += first == "breached"
        line.resolution_met += resolution == "met"
        line.resolution_breached += resolution == "breached"
        if row.first_response_at is not None:
            line.first_response_hours.append(_hours(row.first_response_at - row.created_at))
        if row.closed_at is not None:
            line.resolution_hours.append(_hours(row.closed_at - row.created_at))
    return sorted(lines.values(), key=lambda line: (line.team, line.priority or 99))
