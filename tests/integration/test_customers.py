"""Customers: imported from TOML/CSV, found by address or domain, on both databases."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from gateway.app import build
from gateway.config import Settings
from gateway.store.models import Contact
from tests.integration.helpers import detail
from tests.integration.test_cli import cli, cli_json, config, ingest
from tests.support.mails import make_mail
from tests.support.settings import Clock, make_settings, settings_dict, to_toml

__all__ = ["config"]  # the fixture

DATA = Path(__file__).resolve().parent.parent / "data" / "customers"


def ticket(db_url: str, tmp_path: Path, reference: str) -> dict:  # type: ignore[type-arg]
    async def run() -> dict:  # type: ignore[type-arg]
        gateway = build(make_settings(db_url, maildir=tmp_path / "sent"), clock=Clock())
        try:
            return await detail(gateway, reference)
        finally:
            await gateway.close()

    return asyncio.run(run())


def contacts(db_url: str, tmp_path: Path) -> dict[str, int | None]:
    async def run() -> dict[str, int | None]:
        gateway = build(make_settings(db_url, maildir=tmp_path / "sent"), clock=Clock())
        try:
            async with gateway.sessions() as session:
                rows = await session.scalars(select(Contact))
                return {c.address: c.organisation_id for c in rows}
        finally:
            await gateway.close()

    return asyncio.run(run())


def test_import_toml_then_csv_updates_by_customer_number(config: Path) -> None:
    first = cli(config, "customers", "import", str(DATA / "vtm_customers.toml"))
    assert first.exit_code == 0, first.output
    assert "created 3, updated 0 organisations (4 domains, 2 contacts)" in first.output
    again = cli(config, "customers", "import", str(DATA / "vtm_customers.csv"))
    assert again.exit_code == 0, again.output
    assert "created 0, updated 3 organisations (4 domains, 3 contacts)" in again.output
    rows = cli_json(config, "customers", "list")
    assert [(r["number"], r["contract"]) for r in rows] == [
        ("C-1001", "none"),
        ("C-2002", "sla"),
        ("C-3003", "sla_24x7"),
    ]
    port = cli_json(config, "customers", "show", "C-2002")
    assert port["domains"] == ["haven-noord.example", "havennoord.example"]
    assert [c["address"] for c in port["contacts"]] == [
        "jan@havennoord.example",
        "ops@havennoord.example",
    ]
    assert port["included_hours"] == 10


def test_a_dry_run_changes_nothing(config: Path) -> None:
    result = cli(config, "customers", "import", "--dry-run", str(DATA / "vtm_customers.toml"))
    assert result.exit_code == 0 and "would create 3" in result.output
    assert cli_json(config, "customers", "list") == []


def test_a_bad_file_is_refused_whole_with_a_line_per_problem(config: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[organisations]]\nnumber = "C-1"\nname = "A"\ncontract = "gold"\n')
    result = cli(config, "customers", "import", str(bad))
    assert result.exit_code == 2
    assert "bad.toml: organisation 1: contract:" in result.output
    assert cli_json(config, "customers", "list") == []


def test_set_changes_contract_and_domains(config: Path) -> None:
    cli(config, "customers", "import", str(DATA / "vtm_customers.toml"))
    result = cli(
        config, "customers", "set", "C-1001", "--contract", "sla", "--add-domain", "degraaf.example"
    )
    assert result.exit_code == 0, result.output
    shown = cli_json(config, "customers", "show", "C-1001")
    assert shown["contract"] == "sla"
    assert shown["domains"] == ["bakkerijdegraaf.example", "degraaf.example"]
    assert shown["contacts"][0]["address"] == "piet@bakkerijdegraaf.example"  # kept
    missing = cli(config, "customers", "show", "C-9")
    assert missing.exit_code != 0 and "no organisation with customer number C-9" in missing.output


def test_mail_from_an_unknown_address_in_a_known_domain_belongs_to_the_organisation(
    config: Path, db_url: str, tmp_path: Path
) -> None:
    cli(config, "customers", "import", str(DATA / "vtm_customers.toml"))
    ingest(db_url, tmp_path, make_mail(sender="Kees <kees@haven-noord.example>"))
    shown = ticket(db_url, tmp_path, "VTM-2026-000001")
    assert shown["organisation"] == {
        "number": "C-2002",
        "name": "Havenbedrijf Noord",
        "contract": "sla",
    }
    known = contacts(db_url, tmp_path)
    assert known["kees@haven-noord.example"] == known["ops@havennoord.example"] is not None


def test_a_contacts_language_is_the_tickets_language(
    config: Path, db_url: str, tmp_path: Path
) -> None:
    cli(config, "customers", "import", str(DATA / "vtm_customers.toml"))
    ingest(db_url, tmp_path, make_mail(sender="ops@havennoord.example"))
    shown = ticket(db_url, tmp_path, "VTM-2026-000001")
    assert (shown["organisation"]["number"], shown["language"]) == ("C-2002", "en")


def test_unknown_domains_become_contacts_without_contract(
    config: Path, db_url: str, tmp_path: Path
) -> None:
    ingest(db_url, tmp_path, make_mail(sender="someone@elsewhere.example"))
    assert ticket(db_url, tmp_path, "VTM-2026-000001")["organisation"] is None
    assert contacts(db_url, tmp_path) == {"someone@elsewhere.example": None}


def test_hold_keeps_unknown_domains_for_review_until_the_customer_is_known(
    db_url: str, tmp_path: Path
) -> None:
    held = tmp_path / "held.toml"
    data = settings_dict(db_url, maildir=tmp_path / "sent")
    data["customers"] = {"unknown_domain": "hold"}
    held.write_text(to_toml(data))

    async def arrive() -> None:
        gateway = build(Settings.model_validate(data), clock=Clock())
        try:
            await gateway.pipeline.ingest(make_mail(sender="kees@nieuwklant.example"), "test")
        finally:
            await gateway.close()

    asyncio.run(arrive())
    (entry,) = cli_json(held, "quarantine", "list")
    assert entry["stage"] == "review"
    assert "no organisation has domain nieuwklant.example" in entry["error"]
    customers = tmp_path / "new.toml"
    customers.write_text(
        '[[organisations]]\nnumber = "C-4004"\nname = "Nieuwe Klant"\n'
        'domains = ["nieuwklant.example"]\n'
    )
    assert cli(held, "customers", "import", str(customers)).exit_code == 0
    done = cli(held, "quarantine", "reprocess", str(entry["id"]))
    assert done.exit_code == 0, done.output
    assert ticket(db_url, tmp_path, "VTM-2026-000001")["organisation"]["number"] == "C-4004"


def test_contacts_are_shown_added_and_moved_from_the_cli(config: Path) -> None:
    cli(config, "customers", "import", str(DATA / "vtm_customers.toml"))
    shown = cli_json(config, "customers", "contact", "OPS@havennoord.example")
    assert shown == {
        "address": "ops@havennoord.example",
        "name": "",
        "language": "en",
        "organisation": "C-2002",
    }
    added = cli_json(config, "customers", "contact", "kees@zhwest.example", "--name", "Kees")
    assert (added["organisation"], added["language"]) == ("C-3003", "nl")  # its domain's
    moved = cli_json(
        config, "customers", "contact", "kees@zhwest.example", "--organisation", "C-1001",
        "--language", "en",
    )  # fmt: skip
    assert (moved["organisation"], moved["name"], moved["language"]) == ("C-1001", "Kees", "en")
    alone = cli_json(config, "customers", "contact", "kees@zhwest.example", "--no-organisation")
    assert alone["organisation"] is None
    missing = cli(config, "customers", "contact", "nobody@x.example")
    assert missing.exit_code != 0 and "no contact nobody@x.example" in missing.output
