"""Time on tickets and the monthly reports, through the CLI, on both databases."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_cli import cli, cli_json, config, ingest
from tests.support.mails import make_mail

__all__ = ["config"]  # the fixture

DATA = Path(__file__).resolve().parent.parent / "data" / "customers"


def opened(config: Path, db_url: str, tmp_path: Path) -> None:
    """The three customers, and tickets 1-2 from the bakery and 3 from the port
    (the test clock stands at 2 March 2026)."""
    assert cli(config, "customers", "import", str(DATA / "vtm_customers.toml")).exit_code == 0
    ingest(
        db_url,
        tmp_path,
        make_mail(sender="piet@bakkerijdegraaf.example", subject="Oven offline"),
        make_mail(sender="piet@bakkerijdegraaf.example", subject="Kassa"),
        make_mail(sender="ops@havennoord.example", subject="Kraan 4 geen netwerk"),
    )


def log(config: Path, *args: str) -> str:
    result = cli(config, "ticket", "time", *args)
    assert result.exit_code == 0, result.output
    return result.output


def test_time_is_registered_and_kept_in_the_history(
    config: Path, db_url: str, tmp_path: Path
) -> None:
    opened(config, db_url, tmp_path)
    out = log(config, "VTM-2026-000001", "1h30m", "--date", "2026-03-03", "--note", "oven")
    assert out.strip() == "VTM-2026-000001: 1h30 billable on 2026-03-03"
    history = cli_json(config, "ticket", "show", "VTM-2026-000001")["history"]
    assert history[-1]["field"] == "time" and history[-1]["reason"] == "oven"
    bad = cli(config, "ticket", "time", "VTM-2026-000001", "25h")
    assert bad.exit_code == 2 and "1 minute to 24 hours" in bad.output


def test_the_billing_report_adds_up_per_mode(config: Path, db_url: str, tmp_path: Path) -> None:
    opened(config, db_url, tmp_path)
    log(config, "VTM-2026-000001", "2h", "--date", "2026-03-03")
    log(config, "VTM-2026-000002", "45m", "--kind", "warranty", "--date", "2026-03-04")
    log(config, "VTM-2026-000003", "7h", "--date", "2026-03-05")
    log(config, "VTM-2026-000003", "4h30m", "--date", "2026-03-06")
    log(config, "VTM-2026-000003", "3h", "--kind", "sla", "--date", "2026-03-06")
    log(config, "VTM-2026-000003", "1h", "--date", "2026-04-01")  # another month
    bakery, port = cli_json(config, "report", "billing", "--period", "2026-03")
    assert (bakery["customer"], bakery["billable_minutes"], bakery["warranty_minutes"]) == (
        "C-1001",
        120,
        45,
    )
    assert bakery["invoiced_minutes"] == 120
    assert (bakery["tickets_submitted"], bakery["submission_fees"]) == (2, 50.0)
    assert port["customer"] == "C-2002"
    assert (port["billable_minutes"], port["sla_minutes"]) == (690, 180)
    assert (port["included_used_minutes"], port["invoiced_minutes"]) == (600, 90)
    assert sum(t["billable"] for t in port["tickets"]) == port["billable_minutes"]
    (only,) = cli_json(config, "report", "billing", "--period", "2026-03", "--customer", "C-2002")
    assert only == port
    text = cli(config, "report", "billing", "--period", "2026-03", "--csv").output.splitlines()
    assert text[0].startswith("customer,name,billing,ticket")
    assert "C-2002,Havenbedrijf Noord,sla_settlement,TOTAL,,0,180,690" in text
    assert cli_json(config, "report", "billing", "--period", "2026-02") == []


def test_the_sla_report_counts_per_team_and_priority(
    config: Path, db_url: str, tmp_path: Path
) -> None:
    opened(config, db_url, tmp_path)
    lines = cli_json(config, "report", "sla", "--period", "2026-03")
    assert [(line["team"], line["priority"], line["tickets"]) for line in lines] == [
        ("business", None, 3)
    ]
    # Nobody answered: the one-working-day and SLA targets of 2 March are long past.
    assert lines[0]["first_response_breached"] == 3
    bad = cli(config, "report", "sla", "--period", "March")
    assert bad.exit_code == 2 and "YYYY-MM" in bad.output
