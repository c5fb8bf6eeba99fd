"""rate_limit_overrides: an admin's per-user quota (a service user for an integration)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 02:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_overrides",
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("requests", sa.String(length=100), nullable=True),
        sa.Column("money", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("updated_by", sa.UUID(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_rate_limit_overrides_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["updated_by"], ["users.id"], name=op.f("fk_rate_limit_overrides_updated_by_users")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_rate_limit_overrides")),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_overrides")
