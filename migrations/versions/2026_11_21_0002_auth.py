"""auth: access-token versions on users, revocation reasons on refresh tokens

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 23:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REVOKE_REASONS = ("logout", "reuse_detected", "deactivated", "password_changed")


def upgrade() -> None:
    # Bumped on password change and deactivation: access tokens carry it as `ver`.
    op.add_column("users", sa.Column("token_version", sa.Integer(), server_default="0", nullable=False))
    op.add_column("refresh_tokens", sa.Column("revoked_reason", sa.String(length=32), nullable=True))
    # Rows revoked before reasons existed: the only revocation there was is a logout.
    op.execute("UPDATE refresh_tokens SET revoked_reason = 'logout' WHERE revoked_at IS NOT NULL")
    op.create_check_constraint(
        op.f("ck_refresh_tokens_revoked_reason_valid"),
        "refresh_tokens",
        "revoked_reason IS NULL OR revoked_reason IN ({})".format(
            ", ".join(f"'{r}'" for r in REVOKE_REASONS)
        ),
    )
    op.create_check_constraint(
        op.f("ck_refresh_tokens_revoked_has_reason"),
        "refresh_tokens",
        "(revoked_at IS NULL) = (revoked_reason IS NULL)",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_refresh_tokens_revoked_has_reason"), "refresh_tokens", type_="check")
    op.drop_constraint(op.f("ck_refresh_tokens_revoked_reason_valid"), "refresh_tokens", type_="check")
    op.drop_column("refresh_tokens", "revoked_reason")
    op.drop_column("users", "token_version")
