"""Customer files (TOML and CSV): the same organisations either way; clear problems."""

from pathlib import Path

import pytest

from gateway.domain.customers import (
    Billing,
    Contract,
    CustomerFileError,
    OrganisationRecord,
    parse_csv,
    parse_toml,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "customers"


def by_number(records: list[OrganisationRecord]) -> dict[str, OrganisationRecord]:
    return {r.number: r for r in records}


def test_the_toml_file_gives_contracts_domains_targets_and_contacts() -> None:
    orgs = by_number(parse_toml((DATA / "vtm_customers.toml").read_text()))
    assert sorted(orgs) == ["C-1001", "C-2002", "C-3003"]
    bakery, port, hospital = orgs["C-1001"], orgs["C-2002"], orgs["C-3003"]
    assert (bakery.contract, bakery.billing, bakery.submission_fee_cents) == (
        Contract.NONE,
        Billing.INVOICE,
        2500,
    )
    assert bakery.contacts[0].address == "piet@bakkerijdegraaf.example"  # lower-cased
    assert port.domains == ["havennoord.example", "haven-noord.example"]
    assert port.included_minutes == 600
    assert port.sla_targets[1].first_response_hours == 0.5
    assert port.contacts[0].language == "en"
    assert hospital.contract is Contract.SLA_24X7 and hospital.contacts == []


def test_the_csv_file_says_the_same_as_the_toml_file_one_row_per_contact() -> None:
    from_csv = by_number(parse_csv((DATA / "vtm_customers.csv").read_text()))
    from_toml = by_number(parse_toml((DATA / "vtm_customers.toml").read_text()))
    assert [c.address for c in from_csv["C-2002"].contacts] == [
        "ops@havennoord.example",
        "jan@havennoord.example",
    ]
    for number, record in from_toml.items():
        other = from_csv[number]
        assert (other.name, other.domains, other.contract, other.billing) == (
            record.name,
            record.domains,
            record.contract,
            record.billing,
        )
        assert other.included_minutes == record.included_minutes


def test_every_problem_is_named_with_where_it_is() -> None:
    text = """
[[organisations]]
number = "C-1"
name = "A"
contract = "gold"
domains = ["not a domain"]

[[organisations]]
number = "C-2"
name = "B"
colour = "red"
sla_targets = { 7 = { first_response_hours = 1, resolution_hours = 2 } }
"""
    with pytest.raises(CustomerFileError) as info:
        parse_toml(text)
    problems = "\n".join(info.value.problems)
    assert "organisation 1: contract:" in problems
    assert "organisation 1: domains.0:" in problems
    assert "organisation 2: colour: unknown key" in problems
    assert "organisation 2: sla_targets: priorities must be 1-5 (got [7])" in problems


def test_two_organisations_cannot_share_a_domain_or_a_contact() -> None:
    text = """
[[organisations]]
number = "C-1"
name = "A"
domains = ["shared.example"]
contacts = [{ address = "x@shared.example" }]
[[organisations]]
number = "C-2"
name = "B"
domains = ["shared.example"]
contacts = [{ address = "x@shared.example" }]
"""
    with pytest.raises(CustomerFileError) as info:
        parse_toml(text)
    assert info.value.problems == [
        "domain shared.example is in both C-1 and C-2",
        "contact x@shared.example is in both C-1 and C-2",
    ]


def test_csv_rows_of_one_organisation_must_agree_and_columns_must_be_known() -> None:
    rows = "number,name,contract\nC-1,A,sla\nC-1,A,none\n"
    with pytest.raises(CustomerFileError, match="line 3: contract differs"):
        parse_csv(rows)
    with pytest.raises(CustomerFileError, match="unknown column colour"):
        parse_csv("number,name,colour\nC-1,A,red\n")
    with pytest.raises(CustomerFileError, match="missing column name"):
        parse_csv("number\nC-1\n")
