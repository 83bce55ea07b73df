"""Quality flags per cell (JSON list: blurred, overexposed, underexposed) and where a cell came from.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        batch.add_column(sa.Column("flags", sa.Text, nullable=False, server_default="[]"))
        batch.add_column(
            sa.Column("source", sa.Text, nullable=True)
        )  # JSON: field name and box for field crops


def downgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        batch.drop_column("source")
        batch.drop_column("flags")
