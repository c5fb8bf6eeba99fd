"""analytics rollups: per (UTC day of creation, currency) transaction counts and
completed volume, per (account, UTC day) money in and out, kept by triggers

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 06:00:00

Every writer of `transactions` and `ledger_entries` (API inserts, worker groups, batch
chunks, the scheduler, reversals, holds, exchanges, an operator's SQL) keeps the rollups
in its own database transaction, through statement-level AFTER triggers with transition
tables: one aggregate and one ordered upsert per statement, however many rows it wrote
(a COPY of 5,000 entries is one upsert of a few rows).

`analytics_daily` is sharded: each backend adds to its own row (`pg_backend_pid() % 16`)
of (day, currency), so concurrent API requests and workers do not queue on today's one
hot row; reads sum the shards. A status change adds the difference (new row's share
minus old row's share) to the row of the transaction's *creation* day, however late it
completes. `analytics_account_daily` is not sharded: the only writer of entries is the
posting engine, which already holds the account's row lock when it inserts them, so a
second writer of the same rollup row would have waited for that lock anyway.

Sums are NUMERIC: a day of amounts each up to 10^18 minor units can leave BIGINT.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHARDS = 16

# One signed share per transaction row: +1 for the row as it is now, -1 for the row as
# it was. `{source}` is a SELECT of (created_at, currency, status, amount_minor, sign).
_DAILY_UPSERT = f"""
    INSERT INTO analytics_daily AS d
        (day, currency, shard, created_count, completed_count, failed_count, volume_minor)
    SELECT (s.created_at AT TIME ZONE 'UTC')::date, s.currency, pg_backend_pid() % {SHARDS},
           SUM(s.sign),
           COALESCE(SUM(s.sign) FILTER (WHERE s.status = 'completed'), 0),
           COALESCE(SUM(s.sign) FILTER (WHERE s.status = 'failed'), 0),
           COALESCE(SUM(s.sign * s.amount_minor) FILTER (WHERE s.status = 'completed'), 0)
    FROM ({{source}}) AS s
    GROUP BY 1, 2
    -- A share that changes nothing (pending -> cancelled, a claim's attempts + 1) writes nothing.
    HAVING SUM(s.sign) <> 0
        OR SUM(s.sign) FILTER (WHERE s.status = 'completed') <> 0
        OR SUM(s.sign) FILTER (WHERE s.status = 'failed') <> 0
        OR SUM(s.sign * s.amount_minor) FILTER (WHERE s.status = 'completed') <> 0
    -- One order for every writer: two statements never take two rows in opposite orders.
    ORDER BY 1, 2
    ON CONFLICT (day, currency, shard) DO UPDATE SET
        created_count = d.created_count + EXCLUDED.created_count,
        completed_count = d.completed_count + EXCLUDED.completed_count,
        failed_count = d.failed_count + EXCLUDED.failed_count,
        volume_minor = d.volume_minor + EXCLUDED.volume_minor
"""

_COLUMNS = "created_at, currency, status, amount_minor"
SOURCES = {
    "insert": f"SELECT {_COLUMNS}, 1 AS sign FROM new_rows",
    # Only rows whose share can have changed; each adds its new share and takes back its old.
    "update": f"""
        SELECT v.* FROM new_rows n JOIN old_rows o ON o.id = n.id
        CROSS JOIN LATERAL (VALUES (n.created_at, n.currency, n.status, n.amount_minor, 1),
                                   (o.created_at, o.currency, o.status, o.amount_minor, -1))
            AS v({_COLUMNS}, sign)
        WHERE (o.created_at, o.currency, o.status, o.amount_minor)
            IS DISTINCT FROM (n.created_at, n.currency, n.status, n.amount_minor)
    """,
    "delete": f"SELECT {_COLUMNS}, -1 AS sign FROM old_rows",
}
REFERENCING = {
    "insert": "REFERENCING NEW TABLE AS new_rows",
    "update": "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "delete": "REFERENCING OLD TABLE AS old_rows",
}


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE analytics_daily (
            day DATE NOT NULL,
            currency VARCHAR(3) NOT NULL,
            shard SMALLINT NOT NULL,
            created_count BIGINT NOT NULL DEFAULT 0,
            completed_count BIGINT NOT NULL DEFAULT 0,
            failed_count BIGINT NOT NULL DEFAULT 0,
            volume_minor NUMERIC NOT NULL DEFAULT 0,
            CONSTRAINT pk_analytics_daily PRIMARY KEY (day, currency, shard)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE analytics_account_daily (
            account_id UUID NOT NULL,
            day DATE NOT NULL,
            incoming_minor NUMERIC NOT NULL DEFAULT 0,
            outgoing_minor NUMERIC NOT NULL DEFAULT 0,
            entry_count BIGINT NOT NULL DEFAULT 0,
            CONSTRAINT pk_analytics_account_daily PRIMARY KEY (account_id, day)
        )
        """
    )
    for kind, source in SOURCES.items():
        op.execute(
            f"""
            CREATE FUNCTION analytics_transactions_{kind}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                {_DAILY_UPSERT.format(source=source)};
                RETURN NULL;
            END $$
            """
        )
        op.execute(
            f"""
            CREATE TRIGGER transactions_analytics_{kind} AFTER {kind.upper()} ON transactions
            {REFERENCING[kind]} FOR EACH STATEMENT EXECUTE FUNCTION analytics_transactions_{kind}()
            """
        )
    # Entries are append-only (migrations 0001, 0007): INSERT (and COPY) is the only change.
    op.execute(
        """
        CREATE FUNCTION analytics_entries_insert() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO analytics_account_daily AS a
                (account_id, day, incoming_minor, outgoing_minor, entry_count)
            SELECT account_id, (created_at AT TIME ZONE 'UTC')::date,
                   COALESCE(SUM(amount_minor) FILTER (WHERE amount_minor > 0), 0),
                   COALESCE(-SUM(amount_minor) FILTER (WHERE amount_minor < 0), 0),
                   COUNT(*)
            FROM new_entries
            GROUP BY 1, 2
            ORDER BY 1, 2  -- the posting engine's lock order (ascending account id)
            ON CONFLICT (account_id, day) DO UPDATE SET
                incoming_minor = a.incoming_minor + EXCLUDED.incoming_minor,
                outgoing_minor = a.outgoing_minor + EXCLUDED.outgoing_minor,
                entry_count = a.entry_count + EXCLUDED.entry_count;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER ledger_entries_analytics_insert AFTER INSERT ON ledger_entries
        REFERENCING NEW TABLE AS new_entries FOR EACH STATEMENT EXECUTE FUNCTION analytics_entries_insert()
        """
    )
    # Existing data: the same figures `ledgerq analytics rebuild` computes.
    op.execute(
        """
        INSERT INTO analytics_daily
            (day, currency, shard, created_count, completed_count, failed_count, volume_minor)
        SELECT (created_at AT TIME ZONE 'UTC')::date, currency, 0, COUNT(*),
               COUNT(*) FILTER (WHERE status = 'completed'), COUNT(*) FILTER (WHERE status = 'failed'),
               COALESCE(SUM(amount_minor) FILTER (WHERE status = 'completed'), 0)
        FROM transactions GROUP BY 1, 2
        """
    )
    op.execute(
        """
        INSERT INTO analytics_account_daily (account_id, day, incoming_minor, outgoing_minor, entry_count)
        SELECT account_id, (created_at AT TIME ZONE 'UTC')::date,
               COALESCE(SUM(amount_minor) FILTER (WHERE amount_minor > 0), 0),
               COALESCE(-SUM(amount_minor) FILTER (WHERE amount_minor < 0), 0), COUNT(*)
        FROM ledger_entries GROUP BY 1, 2
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER ledger_entries_analytics_insert ON ledger_entries")
    op.execute("DROP FUNCTION analytics_entries_insert()")
    for kind in SOURCES:
        op.execute(f"DROP TRIGGER transactions_analytics_{kind} ON transactions")
        op.execute(f"DROP FUNCTION analytics_transactions_{kind}()")
    op.execute("DROP TABLE analytics_account_daily")
    op.execute("DROP TABLE analytics_daily")
