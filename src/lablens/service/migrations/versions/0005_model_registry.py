"""A model registry per task, the model that classified each cell, and what the quality gate and OOD guard said.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("task", sa.String(50), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("bundle_hash", sa.String(64), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("registered_by", sa.String(100), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promotion", sa.Text, nullable=True),
        sa.UniqueConstraint("task", "version", name="uq_models_task_version"),
        sa.UniqueConstraint("task", "bundle_hash", name="uq_models_task_bundle"),
    )
    with op.batch_alter_table("samples") as batch:
        batch.add_column(sa.Column("task", sa.String(50), nullable=False, server_default="*"))
        batch.add_column(sa.Column("ood", sa.Text, nullable=True))
    with op.batch_alter_table("cells") as batch:
        batch.add_column(sa.Column("bundle_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("gate", sa.String(30), nullable=False, server_default="classified"))
        batch.add_column(sa.Column("quality_score", sa.Float, nullable=True))
        batch.add_column(sa.Column("ood_score", sa.Float, nullable=True))
    # cells classified before the registry: their sample's bundle classified them
    op.execute(
        "UPDATE cells SET bundle_hash = (SELECT bundle_hash FROM samples WHERE samples.id = cells.sample_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        for name in ("ood_score", "quality_score", "gate", "bundle_hash"):
            batch.drop_column(name)
    with op.batch_alter_table("samples") as batch:
        batch.drop_column("ood")
        batch.drop_column("task")
    op.drop_table("models")
