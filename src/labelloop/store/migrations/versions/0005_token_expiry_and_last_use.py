"""API tokens expire and remember their last use

Revision ID: 0005
Revises: 0004
Create Date: 2027-01-10 09:00:00

"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Tokens made before expiry existed get the default lifetime (auth.token_days), counted from
# the upgrade rather than from their creation: an old token does not die the moment the
# server is upgraded, and no token is left without an end.
_GRACE_DAYS = 90


def upgrade() -> None:
    # Plain ADD COLUMN (nullable): no table copy on SQLite.
    op.add_column("api_tokens", sa.Column("expires_at", sa.DateTime(timezone=True)))
    op.add_column("api_tokens", sa.Column("last_used_at", sa.DateTime(timezone=True)))
    tokens = sa.table("api_tokens", sa.column("expires_at", sa.DateTime(timezone=True)))
    op.execute(
        tokens.update()
        .where(tokens.c.expires_at.is_(None))
        .values(expires_at=datetime.now(UTC) + timedelta(days=_GRACE_DAYS))
    )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("expires_at")
