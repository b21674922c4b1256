"""Customer organisations and their contracts, as the provider writes them down.

Records come from a TOML or CSV file (`ticket-gateway customers import FILE`): pure
parsing and validation here, one clear line per problem; the store keeps them.

TOML: one `[[organisations]]` table per organisation, its contacts as
`[[organisations.contacts]]`. CSV: one row per contact (or one row with empty contact
columns for an organisation without contacts); rows with the same `number` are one
organisation and must agree on its columns. Domains are separated by spaces or `;`.
"""

from __future__ import annotations

import csv
import io
import tomllib
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.domain.priority import PRIORITIES


class Contract(StrEnum):
    NONE = "none"  # no SLA: answered within one working day, best effort
    SLA = "sla"  # SLA targets in business hours
    SLA_24X7 = "sla_24x7"  # SLA targets in calendar hours, on-call outside office hours


class Billing(StrEnum):
    INVOICE = "invoice"  # work is collected and invoiced
    SLA_SETTLEMENT = "sla_settlement"  # included hours per month; overage invoiced


class CustomerFileError(Exception):
    """The file cannot be imported; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


_Domain = Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?\.[a-z]{2,}$")]
_Address = Annotated[str, Field(pattern=r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContactRecord(_Record):
    address: _Address
    name: str = ""
    language: str = Field(default="nl", pattern=r"^(nl|en)$")

    @field_validator("address", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class SlaTarget(_Record):
    first_response_hours: float = Field(gt=0)
    resolution_hours: float = Field(gt=0)


class OrganisationRecord(_Record):
    number: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
    name: str = Field(min_length=1, max_length=255)
    domains: list[_Domain] = []
    contract: Contract = Contract.NONE
    billing: Billing = Billing.INVOICE
    included_hours: float = Field(default=0, ge=0)  # per month, for sla_settlement
    submission_fee: float = Field(default=0, ge=0)  # euros per ticket
    sla_targets: dict[int, SlaTarget] = {}  # priority -> targets; {} = the [sla] defaults
    contacts: list[ContactRecord] = []

    @field_validator("domains", mode="before")
    @classmethod
    def _split_domains(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.replace(";", " ").split()
        if isinstance(value, list):
            return [d.strip().lower().lstrip("@") for d in value if isinstance(d, str)]
        return value

    @field_validator("sla_targets")
    @classmethod
    def _known_priorities(cls, value: dict[int, SlaTarget]) -> dict[int, SlaTarget]:
        unknown = sorted(set(value) - set(PRIORITIES))
        if unknown:
            raise ValueError(f"priorities must be 1-5 (got {unknown})")
        return value

    @property
    def included_minutes(self) -> int:
        return round(self.included_hours * 60)

    @property
    def submission_fee_cents(self) -> int:
        return round(self.submission_fee * 100)


def _describe(error: ValidationError, where: str) -> list[str]:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{where}: {key}: {message}" if key else f"{where}: {message}")
    return lines


def _validated(raw: list[dict[str, Any]], label: str) -> list[OrganisationRecord]:
    records: list[OrganisationRecord] = []
    problems: list[str] = []
    for index, data in enumerate(raw):
        try:
            records.append(OrganisationRecord.model_validate(data))
        except ValidationError as exc:
            problems.extend(_describe(exc, f"{label} {index + 1}"))
    problems.extend(_clashes(records))
    if problems:
        raise CustomerFileError(problems)
    return records


def _clashes(records: list[OrganisationRecord]) -> list[str]:
    """Numbers, domains and contact addresses that two organisations claim."""
    problems = []
    for kind, keys in (
        ("customer number", lambda r: [r.number]),
        ("domain", lambda r: r.domains),
        ("contact", lambda r: [c.address for c in r.contacts]),
    ):
        owner: dict[str, str] = {}
        for record in records:
            for key in keys(record):
                if key in owner and owner[key] != record.number:
                    problems.append(f"{kind} {key} is in both {owner[key]} and {record.number}")
                owner.setdefault(key, record.number)
    return problems


def parse_toml(text: str) -> list[OrganisationRecord]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CustomerFileError([f"not valid TOML: {exc}"]) from exc
    unknown = sorted(set(data) - {"organisations"})
    if unknown:
        raise CustomerFileError([f"unknown top-level keys: {', '.join(unknown)}"])
    organisations = data.get("organisations", [])
    if not isinstance(organisations, list):
        raise CustomerFileError(["organisations must be an array of tables ([[organisations]])"])
    return _validated(organisations, "organisation")


CSV_COLUMNS = (
    "number", "name", "domains", "contract", "billing", "included_hours", "submission_fee",
    "contact_address", "contact_name", "contact_language",
)  # fmt: skip
_ORGANISATION_COLUMNS = CSV_COLUMNS[:7]


def parse_csv(text: str) -> list[OrganisationRecord]:
    """Rows of CSV_COLUMNS (a header row first; `,` or `;` separated)."""
    header = text.split("\n", 1)[0]
    delimiter = ";" if header.count(";") > header.count(",") else ","  # Excel in nl: ";"
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    missing = [c for c in ("number", "name") if c not in (reader.fieldnames or [])]
    unknown = [c for c in reader.fieldnames or [] if c not in CSV_COLUMNS]
    if missing or unknown:
        raise CustomerFileError(
            [f"missing column {c}" for c in missing]
            + [f"unknown column {c} (known: {', '.join(CSV_COLUMNS)})" for c in unknown]
        )
    merged: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for line, row in enumerate(reader, start=2):
        values = {k: (v or "").strip() for k, v in row.items() if k is not None}
        organisation = {k: values[k] for k in _ORGANISATION_COLUMNS if values.get(k)}
        known = merged.setdefault(values.get("number", ""), {**organisation, "contacts": []})
        for key, value in organisation.items():
            if known.get(key) != value:
                problems.append(
                    f"line {line}: {key} differs from an earlier row of {values['number']}"
                )
        if values.get("contact_address"):
            contact = {"address": values["contact_address"], "name": values.get("contact_name", "")}
            if values.get("contact_language"):
                contact["language"] = values["contact_language"]
            known["contacts"].append(contact)
    if problems:
        raise CustomerFileError(problems)
    return _validated(list(merged.values()), "organisation")
