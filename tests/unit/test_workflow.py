"""The transition table reads as PROCESS.md and is the README's table."""

from pathlib import Path

import pytest

from gateway.domain.model import Status
from gateway.domain.workflow import (
    TRANSITIONS,
    Actor,
    InvalidTransition,
    allowed_targets,
    check_transition,
    table_markdown,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def test_nothing_goes_back_to_open() -> None:
    assert all(to is not Status.OPEN for _frm, to in TRANSITIONS)


def test_a_customers_mail_does_exactly_what_process_md_says() -> None:
    customer = {pair for pair, (actors, _) in TRANSITIONS.items() if Actor.CUSTOMER in actors}
    assert customer == {
        (Status.AWAITING_CUSTOMER, Status.IN_PROGRESS),
        (Status.AWAITING_ACCEPTANCE, Status.CLOSED),
        (Status.AWAITING_ACCEPTANCE, Status.IN_PROGRESS),
        (Status.CLOSED, Status.IN_PROGRESS),
    }


def test_timers_only_close_for_silence_and_wake_scheduled_tickets() -> None:
    system = {pair for pair, (actors, _) in TRANSITIONS.items() if Actor.SYSTEM in actors}
    assert system == {
        (Status.AWAITING_CUSTOMER, Status.CLOSED),
        (Status.AWAITING_ACCEPTANCE, Status.CLOSED),
        (Status.SCHEDULED, Status.IN_PROGRESS),
    }


def test_an_agent_reopens_a_closed_ticket_but_does_not_park_it() -> None:
    assert allowed_targets(Status.CLOSED, Actor.AGENT) == [Status.IN_PROGRESS]
    with pytest.raises(InvalidTransition, match="allowed from closed: in_progress"):
        check_transition(Status.CLOSED, Status.ON_HOLD, Actor.AGENT)


def test_every_working_status_reaches_every_other_for_agents() -> None:
    working = [s for s in Status if s not in (Status.OPEN, Status.CLOSED)]
    for frm in [Status.OPEN, *working]:
        for to in [*working, Status.CLOSED]:
            if frm is not to:
                check_transition(frm, to, Actor.AGENT)


def test_a_customer_cannot_close_an_open_ticket() -> None:
    with pytest.raises(InvalidTransition, match="cannot go from open to closed"):
        check_transition(Status.OPEN, Status.CLOSED, Actor.CUSTOMER)


def test_the_readme_shows_the_table_as_the_code_has_it() -> None:
    assert table_markdown() in README.read_text(encoding="utf-8")
