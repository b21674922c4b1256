"""articles keep the whole text beside the new part of a reply

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 18:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing articles keep their body as it was: the whole text (full_body NULL).
    with op.batch_alter_table("articles") as batch_op:
        batch_op.add_column(sa.Column("full_body", sa.Text(), nullable=True))


def downgrade() -> None:
    # The whole text is what the old version showed.
    op.execute("UPDATE articles SET body = full_body WHERE full_body IS NOT NULL")
    with op.batch_alter_table("articles") as batch_op:
        batch_op.drop_column("full_body")
