"""SLA targets per contract and priority; due times that stop with the clock."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.domain.calendar import BusinessCalendar
from gateway.domain.customers import Contract
from gateway.domain.sla import ClockState, SlaClock, SlaRules, Targets, due, targets_for, warning

AMS = ZoneInfo("Europe/Amsterdam")
RULES = SlaRules()
OFFICE = SlaClock(BusinessCalendar(), business_hours=True)
ALWAYS = SlaClock(BusinessCalendar(), business_hours=False)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)  # type: ignore[misc]


def test_without_a_contract_the_answer_is_due_within_one_working_day() -> None:
    assert targets_for(RULES, Contract.NONE, 1) == Targets(timedelta(hours=8.5), None, True)


@pytest.mark.parametrize(
    ("contract", "priority", "first", "resolution", "business"),
    [
        (Contract.SLA, 1, 1, 4, True),
        (Contract.SLA, 5, 8.5, 85, True),
        (Contract.SLA, None, 4, 17, True),  # unprioritised: priority 3 until one is set
        (Contract.SLA_24X7, 2, 2, 8.5, False),
    ],
)
def test_sla_targets_follow_the_priority_and_the_contract(
    contract: Contract, priority: int | None, first: float, resolution: float, business: bool
) -> None:
    assert targets_for(RULES, contract, priority) == Targets(
        timedelta(hours=first), timedelta(hours=resolution), business
    )


def test_an_organisations_own_targets_win_for_their_priority() -> None:
    own = {"1": [0.5, 2.0]}
    assert targets_for(RULES, Contract.SLA, 1, own).first_response == timedelta(minutes=30)
    assert targets_for(RULES, Contract.SLA, 2, own).first_response == timedelta(hours=2)


def test_friday_afternoon_mail_is_due_monday_afternoon_on_office_hours() -> None:
    state = ClockState(local(2026, 11, 27, 16, 59).astimezone(UTC))  # a Friday
    assert due(OFFICE, state, timedelta(hours=8.5)) == local(2026, 11, 30, 16, 59)


def test_a_24x7_clock_counts_the_weekend() -> None:
    state = ClockState(local(2026, 11, 27, 16, 59).astimezone(UTC))
    assert due(ALWAYS, state, timedelta(hours=2)) == local(2026, 11, 27, 18, 59)


def test_the_clock_stands_still_while_the_customer_is_awaited() -> None:
    start = local(2026, 11, 23, 9, 0)  # Monday
    state = ClockState(start.astimezone(UTC))
    target = timedelta(hours=4)
    assert due(OFFICE, state, target) == local(2026, 11, 23, 13, 0)
    stopped = state.stop(local(2026, 11, 23, 10, 0))
    assert due(OFFICE, stopped, target) is None
    # Awaited for a day and a half of office time, then the customer answers.
    resumed = stopped.resume(OFFICE, local(2026, 11, 24, 14, 0))
    assert resumed.stopped_for == timedelta(hours=12.5)
    assert due(OFFICE, resumed, target) == local(2026, 11, 24, 17, 0)


def test_stopping_twice_keeps_the_first_stop_and_resuming_a_running_clock_is_a_no_op() -> None:
    state = ClockState(local(2026, 11, 23, 9, 0))
    once = state.stop(local(2026, 11, 23, 10, 0))
    assert once.stop(local(2026, 11, 23, 11, 0)) == once
    assert state.resume(OFFICE, local(2026, 11, 23, 12, 0)) == state


def test_the_warning_comes_at_the_fraction_of_the_target() -> None:
    state = ClockState(local(2026, 11, 23, 9, 0))
    assert warning(OFFICE, state, timedelta(hours=5), 0.8) == local(2026, 11, 23, 13, 0)
    assert warning(OFFICE, state, None, 0.8) is None


def test_the_config_defaults_are_the_rules_defaults() -> None:
    from gateway.config import SlaSettings

    assert SlaSettings().rules() == RULES
