"""customers: organisations with their contract, their mail domains, contacts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 20:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.store.models import UTCDateTime

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("contract", sa.String(length=16), nullable=False),
        sa.Column("billing", sa.String(length=16), nullable=False),
        sa.Column("included_minutes", sa.Integer(), nullable=False),
        sa.Column("submission_fee_cents", sa.Integer(), nullable=False),
        sa.Column("sla_targets", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisations")),
        sa.UniqueConstraint("number", name=op.f("uq_organisations_number")),
    )
    op.create_table(
        "organisation_domains",
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("organisation_id", BigIntPK, nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_organisation_domains_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("domain", name=op.f("pk_organisation_domains")),
    )
    op.create_index(
        op.f("ix_organisation_domains_organisation_id"), "organisation_domains", ["organisation_id"]
    )
    op.create_table(
        "contacts",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("organisation_id", BigIntPK, nullable=True),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_contacts_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
        sa.UniqueConstraint("address", name=op.f("uq_contacts_address")),
    )
    op.create_index(op.f("ix_contacts_organisation_id"), "contacts", ["organisation_id"])
    with op.batch_alter_table("tickets") as batch_op:
        batch_op.add_column(sa.Column("organisation_id", BigIntPK, nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_tickets_organisation_id_organisations"),
            "organisations",
            ["organisation_id"],
            ["id"],
        )
        batch_op.create_index(op.f("ix_tickets_organisation_id"), ["organisation_id"])


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch_op:
        batch_op.drop_index(op.f("ix_tickets_organisation_id"))
        batch_op.drop_constraint(
            op.f("fk_tickets_organisation_id_organisations"), type_="foreignkey"
        )
        batch_op.drop_column("organisation_id")
    op.drop_table("contacts")
    op.drop_table("organisation_domains")
    op.drop_table("organisations")
