"""`ledgerq bench analytics`: the analytics reads on a large ledger.

Loads `analytics_transactions` (1M) transactions spread over the past year, with their
ledger entries, into a database built by the migrations, by INSERT ... SELECT
generate_series with the rollup triggers live (so the load also shows what the
triggers cost a bulk writer), pads the daily rollup to all 16 shards of every day and
folds the closed days as the scheduler's hourly tick does; then, through the real API (gunicorn) on one keep-alive
connection, times `analytics_calls` calls of each kind and prints p50/p99, each divided
by the latency of pgbench's select-only (one primary-key read, 1 client) measured on the
same server in the same run, and beside GET /accounts/{id} timed the same way (what any
authenticated read costs on this machine). For contrast it also times the direct count
the rollups replace, and the verify check that compares the two.
"""

from __future__ import annotations

import http.client
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import psycopg
from sqlalchemy import text

from api.cli.bench import seed
from api.cli.bench.baseline import libpq_url
from api.cli.bench.report import Outcome
from api.cli.bench.stats import percentiles

ACCOUNTS = {"USD": 900, "EUR": 100}
CHUNK = 100_000


def analytics(bench: Any) -> Outcome:
    from api.cli.bench.scenarios import say

    o = bench.options
    out = Outcome("analytics")
    say("baseline: pgbench select-only, 1 client ...")
    select = bench.baselines.select_only(clients=1)
    # A call's time is divided by one read's: the latency, not the tps, is the baseline.
    out.baselines["select"] = {
        "name": "select-only, 1 client",
        "unit": "ms",
        "value": select["latency_ms"],
        "select_tps": select["tps"],
        "command": select["command"],
    }
    with bench.run.database("analytics") as url:
        finance = seed.users(1, role="finance", prefix="analytics")[0]
        with psycopg.connect(libpq_url(url), autocommit=True) as db:
            say(f"analytics: loading {o.analytics_transactions:,} transactions over 365 days ...")
            accounts, hot, load_seconds = _load(db, finance.id, o.analytics_transactions)
            out.details["load_seconds"] = load_seconds
            out.details["rows"] = {
                table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
                for table in ("transactions", "ledger_entries", "analytics_daily", "analytics_account_daily")
            }
            out.details["hot_account_entries"] = db.execute(
                "SELECT count(*) FROM ledger_entries WHERE account_id = %s", (hot,)
            ).fetchone()[0]  # type: ignore[index]
            # One loading connection wrote one shard; a busy system writes all 16 of every
            # day: the worst case (the added rows are zeros, the figures unchanged), then
            # folded as the hourly tick would have: only today keeps its 16 shards.
            db.execute(
                "INSERT INTO analytics_daily (day, currency, shard) SELECT day, currency, s "
                "FROM (SELECT DISTINCT day, currency FROM analytics_daily) AS d, generate_series(0, 15) AS s "
                "ON CONFLICT DO NOTHING"
            )
            _fold(db, out)
            db.execute("VACUUM ANALYZE")
            _direct_figures(db, out)
            say("analytics: the triggers' cost on the write path, on and off in turn ...")
            _trigger_cost(db, out, accounts[:2], finance.id, o.analytics_calls)
        with bench.stack(url, "analytics", ("web",), out) as stack:
            seed.log_in(stack.url, [finance])
            today = datetime.now(UTC).date()
            rng = random.Random(14)
            month = (today - timedelta(days=29), today)
            year = (today - timedelta(days=365), today)
            calls = {
                # The floor: the cheapest authenticated read of one row, the same way.
                "GET /accounts/{id} (API floor)": lambda: (f"/api/v1/accounts/{hot}", month, {}),
                "daily, 30 days, USD": lambda: ("/api/v1/analytics/daily", month, {"currency": "USD"}),
                "daily, 366 days, all currencies": lambda: ("/api/v1/analytics/daily", year, {}),
                "account, 30 days": lambda: (f"/api/v1/analytics/accounts/{rng.choice(accounts)}", month, {}),
                "account, 366 days": lambda: (f"/api/v1/analytics/accounts/{rng.choice(accounts)}", year, {}),
                "hot account, 366 days": lambda: (f"/api/v1/analytics/accounts/{hot}", year, {}),
            }
            client = _Client(stack.url, finance.token)
            try:
                for name, call in calls.items():
                    say(f"analytics: {o.analytics_calls} x {name} ...")
                    client.time(call, 5)  # warm-up: the worker's first requests load code
                    ms = percentiles(client.time(call, o.analytics_calls), (50, 99))
                    out.add(f"{name} p50", ms["p50"], "ms", "select")
                    out.add(f"{name} p99", ms["p99"], "ms", "select")
                    if "analytics" in call()[0]:
                        # The database's part alone: the service's query in this process.
                        query = percentiles(_query_times(call, o.analytics_calls), (50,))
                        out.add(f"{name} query p50", query["p50"], "ms", "select")
            finally:
                client.close()
    return out


def _load(db: psycopg.Connection, creator: uuid.UUID, count: int) -> tuple[list[str], str, float]:
    """Accounts per currency (one hot account in 5 transactions), then `count`
    transactions created over the past 365 days (85 % completed, 10 % failed, the rest
    pending or cancelled) and the two entries of each completed one."""
    ids: dict[str, list[str]] = {}
    for currency, n in ACCOUNTS.items():
        rows = db.execute(
            "INSERT INTO accounts (id, owner_id, name, currency, kind, status) "
            "SELECT gen_random_uuid(), %s, 'bench', %s, 'user', 'active' FROM generate_series(1, %s) "
            "RETURNING id::text",
            (creator, currency, n),
        ).fetchall()
        ids[currency] = [r[0] for r in rows]
    everyone = ids["USD"] + ids["EUR"]
    db.execute(
        "INSERT INTO balances (account_id, currency) SELECT id, currency FROM accounts WHERE id = ANY(%s::uuid[])",
        (everyone,),
    )
    hot = ids["USD"][0]
    began = time.perf_counter()
    for start in range(0, count, CHUNK):
        n = min(CHUNK, count - start)
        db.execute(
            """
            WITH picked AS (
                SELECT g, random() AS r, (random() * 364.99)::float8 AS age,
                       (%(usd)s::uuid[])[1 + floor(random() * %(nusd)s)::int] AS u1,
                       (%(usd)s::uuid[])[1 + floor(random() * %(nusd)s)::int] AS u2,
                       (%(eur)s::uuid[])[1 + floor(random() * %(neur)s)::int] AS e1,
                       (%(eur)s::uuid[])[1 + floor(random() * %(neur)s)::int] AS e2
                FROM generate_series(1, %(n)s) AS g
            ), shaped AS (
                SELECT CASE WHEN g %% 10 = 0 THEN 'EUR' ELSE 'USD' END AS currency,
                       CASE WHEN g %% 10 = 0 THEN e1 WHEN g %% 5 = 1 THEN %(hot)s::uuid ELSE u1 END AS a,
                       CASE WHEN g %% 10 = 0 THEN e2 ELSE u2 END AS b,
                       CASE WHEN r < 0.85 THEN 'completed' WHEN r < 0.95 THEN 'failed'
                            WHEN r < 0.98 THEN 'cancelled' ELSE 'pending' END AS status,
                       now() - age * interval '1 day' AS created_at, g
                FROM picked
            )
            INSERT INTO transactions (id, type, status, from_account_id, to_account_id, amount_minor,
                                      currency, created_by, failure_code, created_at, completed_at)
            SELECT gen_random_uuid(), 'transfer', status, a, b, 1 + (g * 7919) %% 100000, currency, %(creator)s,
                   CASE WHEN status = 'failed' THEN 'insufficient_funds' END, created_at,
                   CASE WHEN status = 'completed' THEN created_at + interval '1 second' END
            FROM shaped WHERE a <> b
            """,
            {
                "usd": ids["USD"],
                "nusd": len(ids["USD"]),
                "eur": ids["EUR"],
                "neur": len(ids["EUR"]),
                "hot": hot,
                "n": n,
                "creator": creator,
            },
        )
    db.execute(
        """
        INSERT INTO ledger_entries (transaction_id, account_id, amount_minor, currency, balance_after_minor, created_at, hash)
        -- Read-side data: a placeholder hash (as in setbased.sql), the chain is not what is timed.
        SELECT id, account_id, amount, currency, 0, completed_at, repeat('0', 64) FROM transactions t
        CROSS JOIN LATERAL (VALUES (from_account_id, -amount_minor), (to_account_id, amount_minor)) AS e(account_id, amount)
        WHERE status = 'completed'
        """
    )
    return [a for a in everyone if a != hot], hot, round(time.perf_counter() - began, 1)


# The write shapes time the rollup triggers, not the hash chain (the engine computes it).
_PLACEHOLDER_HASH = "0" * 64


def _fold(db: psycopg.Connection, out: Outcome) -> None:
    """The scheduler's fold of the closed days' shards, timed, with the daily rows
    before and after."""
    from workers.analytics import fold_closed_days

    def rows() -> int:
        return db.execute("SELECT count(*) FROM analytics_daily").fetchone()[0]  # type: ignore[index]

    before = rows()
    began = time.perf_counter()
    folded = fold_closed_days()
    out.details["fold"] = {
        "daily_rows_before": before,
        "daily_rows_after": rows(),
        "day_currency_rows_folded": folded,
        "seconds": round(time.perf_counter() - began, 2),
    }


def _direct_figures(db: psycopg.Connection, out: Outcome) -> None:
    """What the rollups save: the same year of daily figures counted from the rows, and
    the verify check over the whole history (once each; seconds, not milliseconds)."""
    began = time.perf_counter()
    db.execute(
        "SELECT (created_at AT TIME ZONE 'UTC')::date, currency, count(*) FROM transactions "
        "WHERE created_at > now() - interval '366 days' GROUP BY 1, 2"
    ).fetchall()
    out.details["direct_count_daily_year_ms"] = round((time.perf_counter() - began) * 1000, 1)
    from db.analytics.verify import check_analytics_rollups
    from db.session import unit_of_work

    began = time.perf_counter()
    with unit_of_work() as uow:
        uow.session.execute(text("SET LOCAL statement_timeout = 0"))
        problems = check_analytics_rollups(uow.session)
    out.details["verify_check_seconds"] = round(time.perf_counter() - began, 1)
    out.details["verify_check"] = "OK" if not problems else problems[:5]
    if problems:
        out.notes.append(
            f"ROLLUPS DISAGREE WITH THE ROWS ({len(problems)} problems): these figures do not count"
        )


TRIGGERS = (
    ("transactions", "transactions_analytics_insert"),
    ("transactions", "transactions_analytics_update"),
    ("transactions", "transactions_analytics_delete"),
    ("ledger_entries", "ledger_entries_analytics_insert"),
)


def _trigger_cost(
    db: psycopg.Connection, out: Outcome, pair: list[str], creator: uuid.UUID, rounds: int
) -> None:
    """The write shapes of the money path, timed with the rollup triggers enabled and
    disabled in turn (each round rolled back, so the data stays as loaded; the triggers
    are enabled again at the end, before anything else reads the rollups): the API's
    one-row INSERT, and a worker flush (100 rows to `completed`, their 200 entries by
    COPY). The ratio on/off is the triggers' cost, measured in the same run."""
    a, b = pair

    insert = (
        "INSERT INTO transactions (id, type, status, from_account_id, to_account_id, amount_minor, currency, "
        "created_by) SELECT gen_random_uuid(), 'transfer', 'pending', %s, %s, 100, 'USD', %s "
        "FROM generate_series(1, %s) RETURNING id"
    )

    def api_insert(cursor: psycopg.Cursor) -> float:
        began = time.perf_counter()
        cursor.execute(insert, (a, b, creator, 1))
        return time.perf_counter() - began

    def worker_flush(cursor: psycopg.Cursor) -> float:
        ids = [r[0] for r in cursor.execute(insert, (a, b, creator, 100)).fetchall()]
        began = time.perf_counter()
        cursor.execute(
            "UPDATE transactions SET status = 'completed', completed_at = now() WHERE id = ANY(%s)", (ids,)
        )
        with cursor.copy(
            "COPY ledger_entries (transaction_id, account_id, amount_minor, currency, balance_after_minor, hash) "
            "FROM STDIN"
        ) as copy:
            for tx_id in ids:
                copy.write_row((tx_id, a, -100, "USD", 0, _PLACEHOLDER_HASH))
                copy.write_row((tx_id, b, 100, "USD", 0, _PLACEHOLDER_HASH))
        return time.perf_counter() - began

    def timed(shape) -> float:
        db.execute("BEGIN")
        try:
            with db.cursor() as cursor:
                return shape(cursor) * 1000
        finally:
            db.execute("ROLLBACK")

    def switch(enabled: bool) -> None:
        for table, trigger in TRIGGERS:
            db.execute(f"ALTER TABLE {table} {'ENABLE' if enabled else 'DISABLE'} TRIGGER {trigger}")

    # In blocks, on and off in turn, the first rounds after a switch unmeasured: ALTER
    # TABLE drops the session's cached plans, which a running system never pays for.
    blocks = 4
    try:
        for name, shape in (
            ("API insert (1 row)", api_insert),
            ("worker flush (100 rows + 200 entries)", worker_flush),
        ):
            times: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(blocks):
                for enabled in (True, False):
                    switch(enabled)
                    for _ in range(3):
                        timed(shape)
                    times[enabled] += [timed(shape) for _ in range(max(1, rounds // blocks))]
            base = percentiles(times[False], (50,))["p50"]
            out.baselines[f"{name} without triggers"] = {"name": "triggers off", "unit": "ms", "value": base}
            out.add(
                f"{name} p50, triggers on",
                percentiles(times[True], (50,))["p50"],
                "ms",
                f"{name} without triggers",
            )
    finally:
        switch(True)


def _query_times(call, n: int) -> list[float]:
    from db.analytics import repository, service
    from db.session import unit_of_work

    times = []
    with unit_of_work() as uow:
        for _ in range(n):
            path, (since, until), extra = call()
            began = time.perf_counter()
            if path.endswith("/daily"):
                service.daily(uow.session, since, until, extra.get("currency"))
            else:
                repository.account_totals(uow.session, uuid.UUID(path.rsplit("/", 1)[1]), since, until)
            times.append((time.perf_counter() - began) * 1000)
    return times


class _Client:
    """One keep-alive HTTP connection, so a call's time is the server's, not a TCP set-up."""

    def __init__(self, base_url: str, token: str) -> None:
        parts = urlsplit(base_url)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}"}

    def time(self, call, n: int) -> list[float]:
        # A fresh connection per series: the server closes one that idled past its
        # keep-alive while this process timed queries in between.
        self.connection.close()
        times = []
        for _ in range(n):
            path, (since, until), extra = call()
            query = urlencode({"from": since.isoformat(), "to": until.isoformat(), **extra})
            began = time.perf_counter()
            self.connection.request("GET", f"{path}?{query}", headers=self.headers)
            response = self.connection.getresponse()
            body = response.read()
            times.append((time.perf_counter() - began) * 1000)
            if response.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {response.status} {json.loads(body or b'null')}")
        return times

    def close(self) -> None:
        self.connection.close()
