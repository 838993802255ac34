"""worker cursors, job leases and model training keys

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 07:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_cursors",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("project_id", "worker"),
    )
    op.create_table(
        "job_leases",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("project_id", "name"),
    )
    # Plain ADD COLUMN / CREATE INDEX: no table copy (the events table refuses DELETE).
    op.add_column("model_versions", sa.Column("training_key", sa.String(length=64)))
    op.create_index(
        "ix_model_versions_training_key", "model_versions", ["project_id", "kind", "training_key"]
    )
    op.create_index("ix_events_project_id_id", "events", ["project_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_project_id_id", "events")
    op.drop_index("ix_model_versions_training_key", "model_versions")
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("training_key")
    op.drop_table("job_leases")
    op.drop_table("worker_cursors")
