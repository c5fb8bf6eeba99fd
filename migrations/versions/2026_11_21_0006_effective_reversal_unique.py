"""one effective reversal per transaction: a failed or cancelled reversal no longer blocks another

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 23:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("uq_transactions_reverses", "transactions", type_="unique")
    op.create_index(
        "uq_transactions_reverses",
        "transactions",
        ["reverses"],
        unique=True,
        postgresql_where=sa.text("reverses IS NOT NULL AND status NOT IN ('failed', 'cancelled')"),
    )


def downgrade() -> None:
    op.drop_index("uq_transactions_reverses", table_name="transactions")
    op.create_unique_constraint("uq_transactions_reverses", "transactions", ["reverses"])
