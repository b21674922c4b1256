"""SLA clock and due times on tickets; timers

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 20:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.store.models import UTCDateTime

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch_op:
        batch_op.add_column(sa.Column("sla_stopped_at", UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("sla_stopped_seconds", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("first_response_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("first_response_due", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("resolution_due", UTCDateTime(), nullable=True))
        batch_op.create_index(op.f("ix_tickets_first_response_due"), ["first_response_due"])
        batch_op.create_index(op.f("ix_tickets_resolution_due"), ["resolution_due"])
    op.create_table(
        "timers",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("ticket_id", BigIntPK, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("episode", sa.String(length=40), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("fired_at", UTCDateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_timers_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timers")),
        sa.UniqueConstraint("ticket_id", "kind", "episode", name=op.f("uq_timers_ticket_id")),
    )
    op.create_index(op.f("ix_timers_ticket_id"), "timers", ["ticket_id"])
    op.create_index(
        "ix_timers_due",
        "timers",
        ["due_at"],
        postgresql_where=sa.text("fired_at IS NULL"),
        sqlite_where=sa.text("fired_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("timers")
    with op.batch_alter_table("tickets") as batch_op:
        batch_op.drop_index(op.f("ix_tickets_resolution_due"))
        batch_op.drop_index(op.f("ix_tickets_first_response_due"))
        for column in (
            "resolution_due",
            "first_response_due",
            "first_response_at",
            "sla_stopped_seconds",
            "sla_stopped_at",
        ):
            batch_op.drop_column(column)
