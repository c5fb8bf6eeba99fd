"""Analytics queries: reads of the rollups (a range of days: at most a few thousand
index-ordered rows, whatever the number of transactions), and the direct recount from
`transactions` and `ledger_entries` that `verify` compares them with and `rebuild`
corrects them by."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.ledger.repository import changed

# The figures straight from the source rows, in the rollups' shape. The same
# definitions as the triggers of migration 0016: by UTC day of the transaction's creation;
# by UTC day of the ledger entry (= of the completion) per account.
DIRECT_DAILY = """
    SELECT (created_at AT TIME ZONE 'UTC')::date AS day, currency,
           COUNT(*) AS created_count,
           COUNT(*) FILTER (WHERE status = 'completed') AS completed_count,
           COUNT(*) FILTER (WHERE status = 'failed') AS failed_count,
           COALESCE(SUM(amount_minor) FILTER (WHERE status = 'completed'), 0) AS volume_minor
    FROM transactions GROUP BY 1, 2
"""
DIRECT_ACCOUNT_DAILY = """
    SELECT account_id, (created_at AT TIME ZONE 'UTC')::date AS day,
           COALESCE(SUM(amount_minor) FILTER (WHERE amount_minor > 0), 0) AS incoming_minor,
           COALESCE(-SUM(amount_minor) FILTER (WHERE amount_minor < 0), 0) AS outgoing_minor,
           COUNT(*) AS entry_count
    FROM ledger_entries GROUP BY 1, 2
"""
# The rollups with their shards summed, in the same shape.
SUMMED_DAILY = """
    SELECT day, currency, SUM(created_count) AS created_count, SUM(completed_count) AS completed_count,
           SUM(failed_count) AS failed_count, SUM(volume_minor) AS volume_minor
    FROM analytics_daily GROUP BY 1, 2
"""
SUMMED_ACCOUNT_DAILY = """
    SELECT account_id, day, incoming_minor, outgoing_minor, entry_count FROM analytics_account_daily
"""


def daily(session: Session, since: date, until: date, currency: str | None) -> list[Any]:
    """(day, currency, created, completed, failed, volume_minor) per day with any
    transaction created, oldest first; the shards summed."""
    return list(
        session.execute(
            text(
                """
                SELECT day, currency, SUM(created_count), SUM(completed_count), SUM(failed_count),
                       SUM(volume_minor)
                FROM analytics_daily
                WHERE day BETWEEN :since AND :until AND (CAST(:currency AS text) IS NULL OR currency = :currency)
                GROUP BY day, currency
                HAVING SUM(created_count) <> 0
                ORDER BY day, currency
                """
            ),
            {"since": since, "until": until, "currency": currency},
        )
    )


def account_totals(session: Session, account_id: uuid.UUID, since: date, until: date) -> tuple[int, int, int]:
    """(incoming_minor, outgoing_minor, entries) of the account over the days."""
    incoming, outgoing, count = session.execute(
        text(
            """
            SELECT COALESCE(SUM(incoming_minor), 0), COALESCE(SUM(outgoing_minor), 0),
                   COALESCE(SUM(entry_count), 0)
            FROM analytics_account_daily
            WHERE account_id = :account_id AND day BETWEEN :since AND :until
            """
        ),
        {"account_id": account_id, "since": since, "until": until},
    ).one()
    return int(incoming), int(outgoing), int(count)


def _comparison(summed: str, direct: str, key: tuple[str, ...], figures: tuple[str, ...]) -> str:
    """(key..., the rollup's figures..., the direct figures...) where they differ, read
    in one statement, so in one snapshot: a change committed after it is in neither."""
    on = " AND ".join(f"d.{k} = r.{k}" for k in key)
    keys = ", ".join(f"COALESCE(r.{k}, d.{k}) AS {k}" for k in key)
    ours = ", ".join(f"COALESCE(r.{f}, 0) AS r_{f}" for f in figures)
    theirs = ", ".join(f"COALESCE(d.{f}, 0) AS d_{f}" for f in figures)
    differs = f"({', '.join(f'r_{f}' for f in figures)}) <> ({', '.join(f'd_{f}' for f in figures)})"
    return (
        f"SELECT * FROM (SELECT {keys}, {ours}, {theirs} FROM ({summed}) AS r FULL JOIN ({direct}) AS d "
        f"ON {on}) AS c WHERE {differs}"
    )


DAILY_FIGURES = ("created_count", "completed_count", "failed_count", "volume_minor")
ACCOUNT_FIGURES = ("incoming_minor", "outgoing_minor", "entry_count")
DAILY_COMPARISON = _comparison(SUMMED_DAILY, DIRECT_DAILY, ("day", "currency"), DAILY_FIGURES)
ACCOUNT_COMPARISON = _comparison(
    SUMMED_ACCOUNT_DAILY, DIRECT_ACCOUNT_DAILY, ("account_id", "day"), ACCOUNT_FIGURES
)


def daily_mismatches(session: Session, limit: int = 100) -> list[Any]:
    """(day, currency, rollup figures..., direct figures...) where they differ."""
    return list(session.execute(text(f"{DAILY_COMPARISON} ORDER BY 1, 2 LIMIT :limit"), {"limit": limit}))


def account_mismatches(session: Session, limit: int = 100) -> list[Any]:
    """(account_id, day, rollup figures..., direct figures...) where they differ."""
    return list(session.execute(text(f"{ACCOUNT_COMPARISON} ORDER BY 1, 2 LIMIT :limit"), {"limit": limit}))


def correct_rollups(session: Session) -> tuple[int, int]:
    """Add (direct - rollup) to every rollup row that disagrees; the rows corrected
    (daily, per account).

    No lock: each statement reads the rollups and the source rows in one snapshot, and
    adds the difference (ON CONFLICT adds to the row as it is then). A change that
    commits later added its own share through the triggers and is in neither side of
    the difference, so rollup + correction + later shares = direct, however busy the
    ledger is meanwhile."""
    return (
        _correct(
            session, "analytics_daily", ("day", "currency"), DAILY_FIGURES, DAILY_COMPARISON, shard=True
        ),
        _correct(
            session, "analytics_account_daily", ("account_id", "day"), ACCOUNT_FIGURES, ACCOUNT_COMPARISON
        ),
    )


def _correct(
    session: Session,
    table: str,
    key: tuple[str, ...],
    figures: tuple[str, ...],
    comparison: str,
    *,
    shard: bool = False,
) -> int:
    keys = ", ".join(key)
    columns = ", ".join((*key, *(("shard",) if shard else ()), *figures))
    values = ", ".join((*key, *(("0",) if shard else ()), *(f"d_{f} - r_{f}" for f in figures)))
    conflict = ", ".join((*key, *(("shard",) if shard else ())))
    added = ", ".join(f"{f} = a.{f} + EXCLUDED.{f}" for f in figures)
    return changed(
        session.execute(
            text(
                f"INSERT INTO {table} AS a ({columns}) SELECT {values} FROM ({comparison}) AS diff "
                f"ORDER BY {keys} ON CONFLICT ({conflict}) DO UPDATE SET {added}"
            )
        )
    )


# A closed day's shards folded into its shard 0, in one statement: the DELETE ...
# RETURNING hands the removed rows to the INSERT ... ON CONFLICT that adds them to
# shard 0, so no snapshot sees a share in both places or in neither.
# - Shard rows a writer holds right now (a late status change of an old transaction)
#   are skipped, not waited for (SKIP LOCKED): they stay where they are, still summed by
#   reads, and the next fold takes them. The rows it does take are locked first, in key
#   order, so the DELETE never waits; a row updated and committed since the statement
#   began is deleted as it is now (its new share included), one inserted since is left.
# - A writer that adds to a row the fold deleted waits for the fold's commit, then
#   inserts a fresh shard row: reads sum it, the next fold takes it.
# - Days are those before the current UTC day by the database's clock: today's shards
#   are what spreads today's writers, and stay.
FOLD_CLOSED_DAYS = f"""
    WITH days AS (
        SELECT DISTINCT day FROM analytics_daily
        WHERE shard <> 0 AND day < (now() AT TIME ZONE 'UTC')::date
        ORDER BY day LIMIT :days
    ), taken AS MATERIALIZED (
        SELECT r.day, r.currency, r.shard FROM analytics_daily AS r JOIN days USING (day)
        WHERE r.shard <> 0
        ORDER BY r.day, r.currency, r.shard
        FOR UPDATE OF r SKIP LOCKED
    ), folded AS (
        DELETE FROM analytics_daily AS d USING taken AS t
        WHERE (d.day, d.currency, d.shard) = (t.day, t.currency, t.shard)
        RETURNING d.*
    )
    INSERT INTO analytics_daily AS a (day, currency, shard, {", ".join(DAILY_FIGURES)})
    SELECT day, currency, 0, {", ".join(f"SUM({f})" for f in DAILY_FIGURES)}
    FROM folded GROUP BY day, currency
    ORDER BY day, currency  -- the triggers' order
    ON CONFLICT (day, currency, shard) DO UPDATE SET {", ".join(f"{f} = a.{f} + EXCLUDED.{f}" for f in DAILY_FIGURES)}
"""


def fold_closed_days(session: Session, days: int) -> int:
    """Fold the shards of the oldest `days` closed days that have any (FOLD_CLOSED_DAYS
    says why no share is lost or doubled under concurrent writers); the (day, currency)
    rows written, 0 when nothing was left to fold. `analytics_account_daily` is not
    sharded, so has nothing to fold."""
    return changed(session.execute(text(FOLD_CLOSED_DAYS), {"days": days}))
