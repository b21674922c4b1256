"""SLA targets and due times: which targets a ticket has, and when they fall due.

A ticket's SLA clock starts when it is created and stops while the customer or a date
is awaited (awaiting_customer, on_hold, awaiting_acceptance, scheduled). For contracts
with office-hours support it counts open time of the business calendar; for 24/7
contracts all time. A due time is the start plus the target plus the clock time spent
stopped: stored on the ticket while the clock runs, empty while it stands still.

Pure: values in, values out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.domain.calendar import BusinessCalendar, add_calendar_time
from gateway.domain.customers import Contract
from gateway.domain.model import Status

# Statuses in which the SLA clock stands still: someone else than the desk is awaited.
CLOCK_STOPPED = frozenset(
    {Status.AWAITING_CUSTOMER, Status.ON_HOLD, Status.AWAITING_ACCEPTANCE, Status.SCHEDULED}
)


@dataclass(frozen=True)
class SlaRules:
    """The desk's default targets ([sla] in the config), hours per priority 1..5."""

    first_response_hours: Sequence[float] = (1, 2, 4, 8.5, 8.5)
    resolution_hours: Sequence[float] = (4, 8.5, 17, 42.5, 85)
    no_contract_first_response_hours: float = 8.5
    unprioritised: int = 3
    warn_fraction: float = 0.8


@dataclass(frozen=True)
class Targets:
    first_response: timedelta | None
    resolution: timedelta | None
    business_hours: bool  # False: clock hours (24/7)


def _hours(value: float) -> timedelta:
    return timedelta(hours=value)


def targets_for(
    rules: SlaRules,
    contract: Contract | str,
    priority: int | None,
    own: Mapping[str, Sequence[float]] | None = None,
) -> Targets:
    """The targets of a ticket: its organisation's own for this priority, else the
    desk's; without a contract one working day to answer and no resolution target."""
    contract = Contract(contract)
    if contract is Contract.NONE:
        return Targets(_hours(rules.no_contract_first_response_hours), None, True)
    level = priority or rules.unprioritised
    first, resolve = (own or {}).get(str(level)) or (
        rules.first_response_hours[level - 1],
        rules.resolution_hours[level - 1],
    )
    return Targets(_hours(first), _hours(resolve), contract is not Contract.SLA_24X7)


@dataclass(frozen=True)
class SlaClock:
    """Counts business time (office hours) or clock time (24/7)."""

    calendar: BusinessCalendar
    business_hours: bool

    def add(self, start: datetime, duration: timedelta) -> datetime:
        if self.business_hours:
            return self.calendar.add_business_time(start, duration)
        return add_calendar_time(start, duration)

    def between(self, start: datetime, end: datetime) -> timedelta:
        if self.business_hours:
            return self.calendar.business_time_between(start, end)
        return max(end - start, timedelta(0))


@dataclass(frozen=True)
class ClockState:
    """What a ticket keeps of its SLA clock."""

    started_at: datetime
    stopped_at: datetime | None = None  # the clock stands still since then
    stopped_for: timedelta = timedelta(0)  # clock time stood still before that

    def stop(self, now: datetime) -> ClockState:
        return (
            self
            if self.stopped_at is not None
            else ClockState(self.started_at, now, self.stopped_for)
        )

    def resume(self, clock: SlaClock, now: datetime) -> ClockState:
        if self.stopped_at is None:
            return self
        return ClockState(
            self.started_at, None, self.stopped_for + clock.between(self.stopped_at, now)
        )


def due(clock: SlaClock, state: ClockState, target: timedelta | None) -> datetime | None:
    """When `target` of clock time will have passed; None while the clock stands still
    (or without a target)."""
    if target is None or state.stopped_at is not None:
        return None
    return clock.add(state.started_at, target + state.stopped_for)


def warning(
    clock: SlaClock, state: ClockState, target: timedelta | None, fraction: float
) -> datetime | None:
    """When `fraction` of the target will have passed (the team's early warning)."""
    return due(clock, state, None if target is None else target * fraction)
