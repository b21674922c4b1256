"""a partial index on the outbox rows the relay still has to act on

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 22:10:00

The outbox keeps every notification ever sent; the relay's queries are about the few
still waiting. Without this index SQLite answered "the due ones, oldest first" by
scanning the whole table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING = "state IN ('pending', 'claimed', 'sending')"


def upgrade() -> None:
    op.create_index(
        "ix_outbox_waiting",
        "outbox",
        ["next_attempt_at"],
        postgresql_where=sa.text(WAITING),
        sqlite_where=sa.text(WAITING),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_waiting", table_name="outbox")
