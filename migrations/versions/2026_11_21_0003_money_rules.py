"""money rules: per-account limit overrides and the index the limit checks read

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 22:30:00.000000

`down_revision` is 0001 on purpose: parallel branches each start from the initial
schema and are chained when they are merged.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIMIT_COLUMNS = (
    ("max_per_transaction_minor", sa.BigInteger()),
    ("daily_outgoing_limit_minor", sa.BigInteger()),
    ("per_minute_outgoing_count", sa.Integer()),
)


def upgrade() -> None:
    # NULL = the configured default (LEDGERQ_DEFAULT_*); only positive overrides.
    for name, type_ in LIMIT_COLUMNS:
        op.add_column("accounts", sa.Column(name, type_, nullable=True))
    op.create_check_constraint(
        op.f("ck_accounts_max_per_transaction_positive"),
        "accounts",
        "max_per_transaction_minor IS NULL OR max_per_transaction_minor > 0",
    )
    op.create_check_constraint(
        op.f("ck_accounts_daily_outgoing_limit_positive"),
        "accounts",
        "daily_outgoing_limit_minor IS NULL OR daily_outgoing_limit_minor > 0",
    )
    op.create_check_constraint(
        op.f("ck_accounts_per_minute_outgoing_count_positive"),
        "accounts",
        "per_minute_outgoing_count IS NULL OR per_minute_outgoing_count > 0",
    )
    # What the worker sums under the source account's lock: completed outgoing amounts
    # today and their count in the last minute (pending ones use ix_transactions_pending_from).
    op.create_index(
        "ix_transactions_completed_from",
        "transactions",
        ["from_account_id", "completed_at"],
        unique=False,
        postgresql_where=sa.text("status = 'completed'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_transactions_completed_from",
        table_name="transactions",
        postgresql_where=sa.text("status = 'completed'"),
    )
    for name in (
        "ck_accounts_per_minute_outgoing_count_positive",
        "ck_accounts_daily_outgoing_limit_positive",
        "ck_accounts_max_per_transaction_positive",
    ):
        op.drop_constraint(op.f(name), "accounts", type_="check")
    for name, _ in reversed(LIMIT_COLUMNS):
        op.drop_column("accounts", name)
