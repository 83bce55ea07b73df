"""Samples called as a whole by a multiple-instance bundle: the sample's call (JSON) and each cell's attention.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("samples") as batch:
        batch.add_column(sa.Column("call", sa.Text, nullable=True))  # JSON: method, predicted, probabilities
    with op.batch_alter_table("cells") as batch:
        batch.add_column(sa.Column("attention", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        batch.drop_column("attention")
    with op.batch_alter_table("samples") as batch:
        batch.drop_column("call")
