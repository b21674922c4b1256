"""Who may use the 24/7 line, and when a new ticket pages the on-call service."""

import pytest

from gateway.domain.customers import Contract
from gateway.domain.oncall import mail_says_urgent, should_page


@pytest.mark.parametrize(
    ("subject", "headers", "urgent"),
    [
        ("SPOED: kraan 4 plat", {}, True),
        ("Storing glasvezel", {}, True),
        ("Prio 1 alles plat", {}, True),
        ("P2 verbinding traag", {}, True),
        ("Vraag over factuur", {}, False),
        ("Vraag over factuur", {"importance": "High"}, True),
        ("Vraag", {"x-priority": "1 (Highest)"}, True),
        ("Vraag", {"x-priority": "3 (Normal)"}, False),
        ("Vraag", {"priority": "urgent"}, True),
        ("Storingsdienst bedankt", {}, False),  # a word, not part of one
        ("Urgentie laag", {}, False),
    ],
)
def test_urgency_comes_from_headers_or_subject_words(
    subject: str, headers: dict[str, str], urgent: bool
) -> None:
    assert mail_says_urgent(subject, headers) is urgent


def test_only_24x7_customers_page_and_only_outside_office_hours() -> None:
    page = {"category": None, "priority": None, "urgent_mail": True}
    assert should_page(Contract.SLA_24X7, desk_open=False, **page)
    assert not should_page(Contract.SLA_24X7, desk_open=True, **page)
    assert not should_page(Contract.SLA, desk_open=False, **page)
    assert not should_page(Contract.NONE, desk_open=False, **page)


@pytest.mark.parametrize(
    ("category", "priority", "urgent_mail", "pages"),
    [
        ("incident", 1, False, True),
        ("incident", 2, False, True),
        ("incident", 3, True, False),  # a known priority wins over the mail's wording
        (None, None, True, True),
        (None, None, False, False),
        ("service_request", None, True, False),
        ("change", 1, True, False),
    ],
)
def test_urgent_incidents_page(
    category: str | None, priority: int | None, urgent_mail: bool, pages: bool
) -> None:
    assert (
        should_page(
            Contract.SLA_24X7,
            desk_open=False,
            category=category,
            priority=priority,
            urgent_mail=urgent_mail,
        )
        is pages
    )
