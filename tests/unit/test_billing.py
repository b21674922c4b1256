"""Time registration and billing: a worked example per billing mode, totals that add up."""

from datetime import UTC, date, datetime, timedelta

import pytest

from gateway.domain.billing import (
    CustomerBill,
    SlaRow,
    TimeKind,
    TimeRow,
    bills,
    month_bounds,
    parse_duration,
    sla_report,
)


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("45m", 45), ("1h", 60), ("1h30m", 90), ("1.5h", 90), ("1,5h", 90), ("1:30", 90),
     ("90", 90), ("2h 5min", 125), ("24h", 1440)],
)  # fmt: skip
def test_durations_are_read_the_ways_agents_write_them(text: str, minutes: int) -> None:
    assert parse_duration(text) == minutes


@pytest.mark.parametrize("text", ["", "0", "0m", "25h", "1x", "-5m", "h", "1:75"])
def test_impossible_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_a_period_is_a_calendar_month() -> None:
    assert month_bounds("2026-11") == (date(2026, 11, 1), date(2026, 12, 1))
    assert month_bounds("2026-12") == (date(2026, 12, 1), date(2027, 1, 1))
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_bounds("2026-13")


def row(customer: str, ref: str, kind: TimeKind, minutes: int) -> TimeRow:
    return TimeRow(customer, ref, f"subject of {ref}", kind, minutes)


def test_worked_example_invoice_customer_pays_billable_time_and_submission_fees() -> None:
    """Bakkerij de Graaf (invoice, EUR 25 per ticket) in November: three tickets
    submitted; 2 h billable on one, 1 h 30 billable + 45 min warranty on another."""
    bakery = CustomerBill("C-1001", "Bakkerij", "invoice", 0, 2500, tickets_submitted=3)
    (bill,) = bills(
        [bakery],
        [
            row("C-1001", "VTM-2026-000001", TimeKind.BILLABLE, 120),
            row("C-1001", "VTM-2026-000002", TimeKind.BILLABLE, 90),
            row("C-1001", "VTM-2026-000002", TimeKind.WARRANTY, 45),
        ],
    )
    assert [(t.reference, t.charged) for t in bill.tickets] == [
        ("VTM-2026-000001", 120),
        ("VTM-2026-000002", 90),
    ]
    assert bill.total(TimeKind.BILLABLE) == 210
    assert bill.not_charged_minutes == 45
    assert bill.included_used_minutes == 0
    assert bill.invoiced_minutes == 210  # 3 h 30 on the invoice
    assert bill.submission_fees_cents == 7500  # 3 x EUR 25


def test_worked_example_sla_settlement_uses_included_hours_before_invoicing() -> None:
    """Havenbedrijf Noord (sla_settlement, 10 h included per month): 7 h billable on one
    ticket, 4 h 30 billable and 3 h SLA repair on another: 10 h included are used, 1 h 30
    is overage on the invoice; the SLA repair is not charged."""
    port = CustomerBill("C-2002", "Haven", "sla_settlement", 600, 0, tickets_submitted=2)
    (bill,) = bills(
        [port],
        [
            row("C-2002", "VTM-2026-000010", TimeKind.BILLABLE, 420),
            row("C-2002", "VTM-2026-000011", TimeKind.BILLABLE, 270),
            row("C-2002", "VTM-2026-000011", TimeKind.SLA, 180),
        ],
    )
    assert bill.total(TimeKind.BILLABLE) == 690
    assert bill.included_used_minutes == 600
    assert bill.invoiced_minutes == 90
    assert bill.not_charged_minutes == 180
    assert bill.included_used_minutes + bill.invoiced_minutes == bill.total(TimeKind.BILLABLE)


def test_sla_settlement_under_the_included_hours_invoices_nothing() -> None:
    port = CustomerBill("C-2002", "Haven", "sla_settlement", 600, 0, tickets_submitted=0)
    (bill,) = bills([port], [row("C-2002", "VTM-2026-000010", TimeKind.BILLABLE, 300)])
    assert (bill.included_used_minutes, bill.invoiced_minutes) == (300, 0)


def test_customers_without_time_or_fees_are_left_out_and_rows_go_to_their_customer() -> None:
    a = CustomerBill("A", "A", "invoice", 0, 0, tickets_submitted=4)
    b = CustomerBill("B", "B", "invoice", 0, 1000, tickets_submitted=1)
    result = bills([a, b], [row("X", "VTM-2026-000001", TimeKind.BILLABLE, 60)])
    assert [c.number for c in result] == ["B"]


def test_sla_report_counts_met_and_breached_per_team_and_priority() -> None:
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    now = t0 + timedelta(days=10)

    def sla_row(priority: int, answered: float | None, closed: float | None) -> SlaRow:
        return SlaRow(
            "noc",
            priority,
            t0,
            None if answered is None else t0 + timedelta(hours=answered),
            t0 + timedelta(hours=2),
            None if closed is None else t0 + timedelta(hours=closed),
            t0 + timedelta(hours=8),
        )

    (line,) = sla_report([sla_row(2, 1, 4), sla_row(2, 3, 10), sla_row(2, None, None)], now)
    assert (line.team, line.priority, line.tickets) == ("noc", 2, 3)
    assert (line.first_response_met, line.first_response_breached) == (1, 2)
    assert (line.resolution_met, line.resolution_breached) == (1, 2)
    assert line.median_first_response_hours == 2.0
    assert line.median_resolution_hours == 7.0
