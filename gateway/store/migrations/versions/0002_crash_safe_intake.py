"""crash-safe intake: UID ledger, outbox claims, quarantine resolution

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 16:50:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.store.models import UTCDateTime

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mailbox_uids",
        sa.Column("mailbox", sa.String(length=64), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("acked", sa.Boolean(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("mailbox", "uidvalidity", "uid", name=op.f("pk_mailbox_uids")),
    )
    op.create_index(
        "ix_mailbox_uids_unacked",
        "mailbox_uids",
        ["mailbox", "uidvalidity"],
        postgresql_where=sa.text("NOT acked"),
        sqlite_where=sa.text("NOT acked"),
    )
    # The old cursor becomes the ledger's first (acknowledged) row: reading goes on
    # where it stopped.
    op.execute(
        "INSERT INTO mailbox_uids (mailbox, uidvalidity, uid, outcome, acked, at) "
        "SELECT mailbox, uidvalidity, last_uid, 'cursor', true, updated_at "
        "FROM mailbox_cursors WHERE last_uid > 0"
    )
    op.drop_table("mailbox_cursors")

    with op.batch_alter_table("outbox") as batch_op:
        batch_op.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))
    # Rows claimed by the old relay go back to the queue (it had no in-flight state).
    op.execute("UPDATE outbox SET state = 'pending' WHERE state = 'sending'")

    with op.batch_alter_table("quarantine") as batch_op:
        batch_op.add_column(
            sa.Column("size", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("truncated", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("attempts", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.add_column(sa.Column("resolved_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("resolution", sa.String(length=255), nullable=True))
    op.execute("UPDATE quarantine SET size = length(raw) WHERE raw IS NOT NULL")

    op.create_index(
        "uq_inbound_messages_message_id",
        "inbound_messages",
        ["message_id"],
        unique=True,
        postgresql_where=sa.text("outcome <> 'duplicate'"),
        sqlite_where=sa.text("outcome <> 'duplicate'"),
    )


def downgrade() -> None:
    op.drop_index("uq_inbound_messages_message_id", table_name="inbound_messages")
    with op.batch_alter_table("quarantine") as batch_op:
        for column in ("resolution", "resolved_at", "attempts", "truncated", "size"):
            batch_op.drop_column(column)
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.drop_column("claim_token")
    op.execute("UPDATE outbox SET state = 'sending' WHERE state IN ('claimed', 'unknown')")
    op.create_table(
        "mailbox_cursors",
        sa.Column("mailbox", sa.String(length=64), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("mailbox", name=op.f("pk_mailbox_cursors")),
    )
    op.execute(
        "INSERT INTO mailbox_cursors (mailbox, uidvalidity, last_uid, updated_at) "
        "SELECT mailbox, uidvalidity, max(uid), max(at) FROM mailbox_uids "
        "GROUP BY mailbox, uidvalidity"
    )
    op.drop_index("ix_mailbox_uids_unacked", table_name="mailbox_uids")
    op.drop_table("mailbox_uids")
