"""The tamper-evident ledger: ledger_entries.hash / prev_hash, balances.head_hash, and
the chain backfilled for every existing entry (per account, in id order); and batch
reversal: batches.reverses, unique among effective reversals (issue 14)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The canonical encoding v1 of db/ledger/hash_chain.py, frozen here as it was when this
# migration was written (a migration never imports application code that may change).
# Everything but prev_hash, which the chain aggregate appends.
PAYLOAD = (
    "concat_ws(E'\\n', 'ledgerq-entry-v1', id::text, transaction_id::text, account_id::text, "
    "amount_minor::text, currency, balance_after_minor::text, "
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))"
)

# A running aggregate whose state is the previous entry's hash: used as a window function
# over each account's entries in id order, it yields every entry's hash in one set-based
# pass (no row-by-row loop). Temporary: dropped once the backfill is done.
CHAIN_FUNCTIONS = """
CREATE FUNCTION ledgerq_tmp_chain_step(prev text, payload text) RETURNS text
    LANGUAGE sql IMMUTABLE AS
$$ SELECT encode(sha256(convert_to(payload || E'\\n' || COALESCE(prev, ''), 'UTF8')), 'hex') $$;
CREATE AGGREGATE ledgerq_tmp_chain(text) (SFUNC = ledgerq_tmp_chain_step, STYPE = text);
"""

BACKFILL = f"""
UPDATE ledger_entries AS e SET hash = c.hash, prev_hash = c.prev_hash
FROM (
    SELECT id, hash, LAG(hash) OVER (PARTITION BY account_id ORDER BY id) AS prev_hash
    FROM (
        SELECT id, account_id,
               ledgerq_tmp_chain({PAYLOAD}) OVER (PARTITION BY account_id ORDER BY id) AS hash
        FROM ledger_entries
    ) AS chained
) AS c
WHERE e.id = c.id
"""

HEADS = """
UPDATE balances AS b SET head_hash = last.hash
FROM (SELECT DISTINCT ON (account_id) account_id, hash FROM ledger_entries ORDER BY account_id, id DESC) AS last
WHERE b.account_id = last.account_id
"""


def upgrade() -> None:
    op.add_column("ledger_entries", sa.Column("hash", sa.String(length=64), nullable=True))
    op.add_column("ledger_entries", sa.Column("prev_hash", sa.String(length=64), nullable=True))
    op.add_column("balances", sa.Column("head_hash", sa.String(length=64), nullable=True))
    op.execute(CHAIN_FUNCTIONS)
    # The append-only guard (migration 0001) is off for this one UPDATE only, inside the
    # migration's transaction: no other session can write meanwhile (ALTER TABLE holds
    # ACCESS EXCLUSIVE until commit), and a failure rolls the DISABLE back with the rest.
    op.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only")
    op.execute(BACKFILL)
    op.execute("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only")
    op.execute(HEADS)
    op.execute("DROP AGGREGATE ledgerq_tmp_chain(text)")
    op.execute("DROP FUNCTION ledgerq_tmp_chain_step(text, text)")
    op.alter_column("ledger_entries", "hash", nullable=False)

    op.add_column("batches", sa.Column("reverses", sa.UUID(), nullable=True))
    op.create_foreign_key("fk_batches_reverses_batches", "batches", "batches", ["reverses"], ["id"])
    op.create_index(
        "uq_batches_reverses",
        "batches",
        ["reverses"],
        unique=True,
        postgresql_where=sa.text("reverses IS NOT NULL AND status NOT IN ('failed', 'cancelled')"),
    )


def downgrade() -> None:
    op.drop_index("uq_batches_reverses", table_name="batches")
    op.drop_constraint("fk_batches_reverses_batches", "batches", type_="foreignkey")
    op.drop_column("batches", "reverses")
    op.drop_column("balances", "head_hash")
    op.drop_column("ledger_entries", "prev_hash")
    op.drop_column("ledger_entries", "hash")
