"""posting engine: `amount_out_of_range` is a failure code; an index for the workers' bulk claim

A balance that would leave BIGINT range is a business decision of the posting engine
(`failed`, `amount_out_of_range`), never an exception. Workers claim the oldest pending,
never-tried transfers (`db.transactions.repository.claim_for_apply`): a partial index on
`seq` keeps that claim an index scan however large the rest of the table is.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 02:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = ("insufficient_funds", "account_inactive", "limit_exceeded", "currency_mismatch")
_NEW = (*_OLD, "amount_out_of_range")


def _codes(codes: tuple[str, ...]) -> str:
    return "failure_code IS NULL OR failure_code IN (" + ", ".join(f"'{c}'" for c in codes) + ")"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_transactions_failure_code_valid"), "transactions", type_="check")
    op.create_check_constraint(op.f("ck_transactions_failure_code_valid"), "transactions", _codes(_NEW))
    op.create_index(
        "ix_transactions_claimable_seq",
        "transactions",
        ["seq"],
        postgresql_where=sa.text("status = 'pending' AND attempts = 0 AND batch_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_transactions_claimable_seq", table_name="transactions")
    op.drop_constraint(op.f("ck_transactions_failure_code_valid"), "transactions", type_="check")
    op.create_check_constraint(op.f("ck_transactions_failure_code_valid"), "transactions", _codes(_OLD))
