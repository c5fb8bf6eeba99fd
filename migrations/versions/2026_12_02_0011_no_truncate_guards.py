"""ledger_entries and audit_logs refuse TRUNCATE (row triggers do not fire on it)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 02:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUARDED_TABLES = ("ledger_entries", "audit_logs")


def upgrade() -> None:
    # The function of migration 0001 raises "<table> is append-only: TRUNCATE is not
    # allowed"; statement level, because TRUNCATE has no rows to fire for.
    for table in GUARDED_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledgerq_forbid_change()"
        )


def downgrade() -> None:
    for table in GUARDED_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
