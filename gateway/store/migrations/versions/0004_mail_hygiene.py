"""mail hygiene: attachments, bounces, authentication results, desk secrets

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 19:20:00

"""

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from gateway.store.models import UTCDateTime

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "attachment_blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_attachment_blobs")),
    )
    op.create_table(
        "attachments",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("ticket_id", BigIntPK, nullable=False),
        sa.Column("article_id", BigIntPK, nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("disposition", sa.String(length=16), nullable=False),
        sa.Column("content_id", sa.String(length=998), nullable=True),
        sa.Column("is_message", sa.Boolean(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("refused", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["article_id"], ["articles.id"], name=op.f("fk_attachments_article_id_articles")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_attachments_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachments")),
    )
    op.create_index(op.f("ix_attachments_article_id"), "attachments", ["article_id"])
    op.create_index(op.f("ix_attachments_ticket_id"), "attachments", ["ticket_id"])
    op.create_table(
        "bounces",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("inbound_id", BigIntPK, nullable=False),
        sa.Column("outbox_id", BigIntPK, nullable=True),
        sa.Column("ticket_id", BigIntPK, nullable=True),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("permanent", sa.Boolean(), nullable=False),
        sa.Column("diagnostic", sa.String(length=500), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inbound_id"],
            ["inbound_messages.id"],
            name=op.f("fk_bounces_inbound_id_inbound_messages"),
        ),
        sa.ForeignKeyConstraint(
            ["outbox_id"], ["outbox.id"], name=op.f("fk_bounces_outbox_id_outbox")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_bounces_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounces")),
    )
    op.create_index(op.f("ix_bounces_inbound_id"), "bounces", ["inbound_id"])
    op.create_index(op.f("ix_bounces_outbox_id"), "bounces", ["outbox_id"])
    op.create_index(op.f("ix_bounces_ticket_id"), "bounces", ["ticket_id"])
    op.create_index(op.f("ix_bounces_recipient"), "bounces", ["recipient"])
    op.create_table(
        "desk_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_desk_secrets")),
    )
    # The key that signs our Message-IDs when no key file is configured: made here, so
    # every daemon on this database reads the same committed key.
    secrets_table = sa.table(
        "desk_secrets",
        sa.column("name", sa.String),
        sa.column("value", sa.String),
        sa.column("created_at", UTCDateTime()),
    )
    op.bulk_insert(
        secrets_table,
        [
            {
                "name": "message_id_key",
                "value": secrets.token_hex(32),
                "created_at": datetime.now(UTC),
            }
        ],
    )
    with op.batch_alter_table("articles") as batch_op:
        batch_op.add_column(sa.Column("auth", sa.Text(), nullable=True))
    op.create_index("ix_outbox_recipient_created", "outbox", ["recipient", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_recipient_created", table_name="outbox")
    # Suppressed notifications were never sent; the old version knows them as failed.
    op.execute("UPDATE outbox SET state = 'failed' WHERE state = 'suppressed'")
    with op.batch_alter_table("articles") as batch_op:
        batch_op.drop_column("auth")
    op.drop_table("desk_secrets")
    op.drop_table("bounces")
    op.drop_table("attachments")
    op.drop_table("attachment_blobs")
