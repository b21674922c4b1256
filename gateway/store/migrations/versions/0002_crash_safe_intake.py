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
    # A row the old relay left `sending` may have been delivered: at most once from now
    # on, so it is in doubt (`outbox list --state unknown`, `outbox retry ID`).
    op.execute(
        "UPDATE outbox SET state = 'unknown', last_error = 'in delivery when the gateway "
        "was upgraded; may have been delivered' WHERE state = 'sending'"
    )

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

    # Copies that share a Message-ID with an earlier message (possible before this
    # version) become recorded duplicates, so the unique index can be built.
    op.execute(
        "UPDATE inbound_messages SET outcome = 'duplicate' WHERE message_id IS NOT NULL "
        "AND id > (SELECT min(first.id) FROM inbound_messages AS first "
        "WHERE first.message_id = inbound_messages.message_id)"
    )
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
    op.execute("UPDATE outbox SET state = 'pending' WHERE state = 'claimed'")
    # The old relay would resend `sending` rows; unknown ones stay failed, not resent.
    op.execute("UPDATE outbox SET state = 'failed' WHERE state IN ('sending', 'unknown')")
    op.create_table(
        "mailbox_cursors",
        sa.Column("mailbox", sa.String(length=64), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("mailbox", name=op.f("pk_mailbox_cursors")),
    )
    # One cursor per mailbox: the highest UID of its newest UIDVALIDITY.
    op.execute(
        "INSERT INTO mailbox_cursors (mailbox, uidvalidity, last_uid, updated_at) "
        "SELECT u.mailbox, u.uidvalidity, max(u.uid), max(u.at) FROM mailbox_uids AS u "
        "WHERE u.uidvalidity = (SELECT n.uidvalidity FROM mailbox_uids AS n "
        "WHERE n.mailbox = u.mailbox ORDER BY n.at DESC LIMIT 1) "
        "GROUP BY u.mailbox, u.uidvalidity"
    )
    op.drop_index("ix_mailbox_uids_unacked", table_name="mailbox_uids")
    op.drop_table("mailbox_uids")
