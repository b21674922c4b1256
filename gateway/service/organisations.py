"""Customer organisations, their domains and contacts: import, look-up, edits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.domain.access import domain_of
from gateway.domain.customers import OrganisationRecord
from gateway.service.desk import TicketError
from gateway.store import prepared
from gateway.store.models import Contact, Organisation, OrganisationDomain


class UnknownOrganisation(TicketError):
    pass


class HeldForReview(Exception):
    """Mail from an unknown domain while `customers.unknown_domain = "hold"`."""


@dataclass
class ImportSummary:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    contacts: int = 0
    domains: int = 0


def own_targets(org: Organisation) -> dict[str, list[float]] | None:
    """The organisation's own SLA targets: priority ("1".."5") -> [first response hours,
    resolution hours]; None: the desk's defaults."""
    return json.loads(org.sla_targets) if org.sla_targets else None


def _targets_json(record: OrganisationRecord) -> str | None:
    if not record.sla_targets:
        return None
    return json.dumps(
        {
            str(p): [t.first_response_hours, t.resolution_hours]
            for p, t in sorted(record.sla_targets.items())
        }
    )


async def import_organisations(
    session: AsyncSession, records: Sequence[OrganisationRecord], now: datetime
) -> ImportSummary:
    """Create or update each organisation by customer number; its domains become the
    file's; its contacts are added or updated (contacts not in the file stay)."""
    summary = ImportSummary()
    for record in records:
        org = await session.scalar(select(Organisation).where(Organisation.number == record.number))
        if org is None:
            org = Organisation(number=record.number, created_at=now)
            session.add(org)
            summary.created.append(record.number)
        else:
            summary.updated.append(record.number)
        org.name = record.name
        org.contract = record.contract.value
        org.billing = record.billing.value
        org.included_minutes = record.included_minutes
        org.submission_fee_cents = record.submission_fee_cents
        org.sla_targets = _targets_json(record)
        org.updated_at = now
        await session.flush()
        await _set_domains(session, org, record.domains)
        summary.domains += len(record.domains)
        for contact in record.contacts:
            await upsert_contact(
                session, contact.address, now, organisation=org, name=contact.name,
                language=contact.language,
            )  # fmt: skip
            summary.contacts += 1
    return summary


async def _set_domains(session: AsyncSession, org: Organisation, domains: list[str]) -> None:
    taken = await session.scalars(
        select(OrganisationDomain).where(
            OrganisationDomain.domain.in_(domains), OrganisationDomain.organisation_id != org.id
        )
    )
    clash = [d.domain for d in taken]
    if clash:
        raise TicketError(f"domains {', '.join(clash)} belong to another organisation")
    await session.execute(
        delete(OrganisationDomain).where(OrganisationDomain.organisation_id == org.id)
    )
    session.add_all(OrganisationDomain(domain=d, organisation_id=org.id) for d in domains)


async def upsert_contact(
    session: AsyncSession,
    address: str,
    now: datetime,
    *,
    organisation: Organisation | None,
    name: str = "",
    language: str | None = None,
) -> Contact:
    contact = await session.scalar(select(Contact).where(Contact.address == address.lower()))
    if contact is None:
        contact = Contact(
            address=address.lower(), name=name, language=language or "nl", created_at=now
        )
        session.add(contact)
    contact.organisation_id = None if organisation is None else organisation.id
    if name:
        contact.name = name
    if language:
        contact.language = language
    return contact


def organisation_record(org: Organisation, domains: list[str]) -> OrganisationRecord:
    """The organisation as a record (without contacts), e.g. to edit and import again."""
    targets = own_targets(org) or {}
    return OrganisationRecord.model_validate(
        {
            "number": org.number,
            "name": org.name,
            "domains": domains,
            "contract": org.contract,
            "billing": org.billing,
            "included_hours": org.included_minutes / 60,
            "submission_fee": org.submission_fee_cents / 100,
            "sla_targets": {
                p: {"first_response_hours": f, "resolution_hours": r}
                for p, (f, r) in targets.items()
            },
        }
    )


async def get_organisation(session: AsyncSession, number: str) -> Organisation:
    org = await session.scalar(select(Organisation).where(Organisation.number == number))
    if org is None:
        raise UnknownOrganisation(f"no organisation with customer number {number}")
    return org


async def domains_of(session: AsyncSession, org: Organisation) -> list[str]:
    rows = await session.scalars(
        select(OrganisationDomain.domain)
        .where(OrganisationDomain.organisation_id == org.id)
        .order_by(OrganisationDomain.domain)
    )
    return list(rows)


@dataclass(frozen=True)
class Customer:
    """Who a mail's sender is: their contact row (if any) and organisation (if any)."""

    contact: Contact | None
    organisation: Organisation | None

    @property
    def known(self) -> bool:
        return self.contact is not None or self.organisation is not None


_ONE_ROW = select(literal(1).label("one")).subquery()
_DOMAIN_ORGANISATION = (
    select(OrganisationDomain.organisation_id)
    .where(OrganisationDomain.domain == bindparam("domain"))
    .scalar_subquery()
)
# The contact (if any) and the organisation: the contact's own, else its domain's; one
# look-up, on the path of every new ticket.
_CUSTOMER = (
    select(Contact, Organisation)
    .select_from(_ONE_ROW)
    .outerjoin(Contact, Contact.address == bindparam("address"))
    .outerjoin(
        Organisation,
        Organisation.id == func.coalesce(Contact.organisation_id, _DOMAIN_ORGANISATION),
    )
)


async def customer_for(session: AsyncSession, address: str) -> Customer:
    """The sender's contact and organisation: the contact's own, else by mail domain."""
    ((contact, organisation),) = await prepared.load(
        session,
        _CUSTOMER,
        {"address": address, "domain": domain_of(address)},
        Contact,
        Organisation,
    )
    return Customer(contact=contact, organisation=organisation)


async def contact_organisation(session: AsyncSession, address: str) -> Organisation | None:
    """The organisation a contact belongs to; for an unknown address, its domain's."""
    contact = await session.scalar(select(Contact).where(Contact.address == address))
    if contact is None:
        return (await customer_for(session, address)).organisation
    if contact.organisation_id is None:
        return None
    return await session.get(Organisation, contact.organisation_id)


async def contact_view(session: AsyncSession, address: str) -> dict[str, Any]:
    """A contact as the CLI shows it; TicketError when there is none."""
    contact = await session.scalar(select(Contact).where(Contact.address == address))
    if contact is None:
        raise TicketError(f"no contact {address} (add one with --organisation or --name)")
    org = await contact_organisation(session, address)
    return {
        "address": contact.address,
        "name": contact.name,
        "language": contact.language,
        "organisation": None if org is None else org.number,
    }
