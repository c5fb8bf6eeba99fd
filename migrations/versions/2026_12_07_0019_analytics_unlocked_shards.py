"""analytics_daily: writes made before a posting locks its accounts add to a shard row
of their backend's own

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 23:45:00

A worker group writes its statuses before it locks its accounts
(db.ledger.posting.engine.post_deciding_first), so the `transactions` update trigger
takes its `analytics_daily` row (an upsert's row lock, held to commit) before the
account locks, while every other posting takes it after them. With one shard per
`pg_backend_pid() % 16`, two backends of the same shard could each hold what the other
waits for (a deadlock), and even without one, two groups of the same shard on disjoint
accounts would queue on that row for as long as either waits for its accounts.

The early writes set `ledgerq.accounts_unlocked` (transaction-local) and add to shard
`16 + pid % 32752` instead: a row of their backend alone (two live backends' pids never
differ by a multiple of 32752 in practice; `shard` is a SMALLINT), which no other
transaction writes, so nothing ever waits for it but the fold of closed days and the
rebuild, which lock no accounts. Reads sum the shards and the fold takes any shard
`<> 0`, so the figures do not change; today's figure sums one more row per backend that
decided groups today.

The three trigger functions are rewritten in place (their text from 0016, with the
shard expression replaced), so 0016 stays their one definition.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = (
    "analytics_transactions_insert",
    "analytics_transactions_update",
    "analytics_transactions_delete",
)
ONE_BAND = "pg_backend_pid() % 16"
TWO_BANDS = (
    "CASE WHEN current_setting('ledgerq.accounts_unlocked', true) = 'on'"
    " THEN 16 + pg_backend_pid() % 32752 ELSE pg_backend_pid() % 16 END"
)


def _rewrite(old: str, new: str) -> None:
    for function in FUNCTIONS:
        op.execute(
            f"""
            DO $$
            DECLARE
                definition text := pg_get_functiondef('{function}'::regproc);
            BEGIN
                IF position($old${old}$old$ IN definition) = 0 THEN
                    RAISE EXCEPTION '{function}: shard expression not found';
                END IF;
                EXECUTE replace(definition, $old${old}$old$, $new${new}$new$);
            END $$
            """
        )


def upgrade() -> None:
    _rewrite(ONE_BAND, TWO_BANDS)


def downgrade() -> None:
    # Shards from 16 up stay as rows: reads sum every shard, and the fold moves closed days'.
    _rewrite(TWO_BANDS, ONE_BAND)
