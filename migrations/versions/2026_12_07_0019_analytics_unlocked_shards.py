"""analytics_daily: writes made before a posting locks its accounts add to shards 16-31

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 23:45:00

A worker group writes its statuses before it locks its accounts
(db.ledger.posting.engine.post_deciding_first), so the `transactions` update trigger
takes its `analytics_daily` row (an upsert's row lock, held to commit) before the
account locks, while every other posting takes it after them. With one shard per
backend (`pg_backend_pid() % 16`) two backends of the same shard could each hold what
the other waits for: a deadlock. The early writes set `ledgerq.accounts_unlocked` (a
transaction-local setting) and add to shard `16 + pid % 16` instead, rows no writer
holding account locks ever takes. Reads sum the shards and the fold of closed days
takes any shard, so the figures do not change.

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
    "pg_backend_pid() % 16"
    " + CASE WHEN current_setting('ledgerq.accounts_unlocked', true) = 'on' THEN 16 ELSE 0 END"
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
    # Shards 16-31 stay as rows: reads sum every shard, and the fold moves closed days'.
    _rewrite(TWO_BANDS, ONE_BAND)
