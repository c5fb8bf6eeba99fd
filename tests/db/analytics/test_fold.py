"""The fold of closed days' rollup shards (the scheduler's hourly tick, and the end of
`ledgerq analytics rebuild`): every figure stays equal to a direct count, also while
old transactions change status from other backends; a second fold finds nothing; today's
shards are left as they are."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from db.analytics import service
from db.session import get_engine, unit_of_work
from tests.fixtures.analytics import expected_daily, rollup_problems
from tests.fixtures.builders import bulk_pending
from tests.fixtures.ledger import apply_now, sql
from workers.analytics import fold_closed_days

INSERT = (
    "INSERT INTO transactions (id, type, status, from_account_id, to_account_id, amount_minor, currency, "
    "created_by, created_at) VALUES (gen_random_uuid(), 'transfer', 'pending', :a, :b, :amount, :currency, "
    ":u, now() - :days * interval '1 day') RETURNING id"
)
FAIL = "UPDATE transactions SET status = 'failed', failure_code = 'insufficient_funds' WHERE id = :id"


def _today():
    return datetime.now(UTC).date()


def _backends(count: int, *, avoid_shard_zero: bool = True) -> list:
    """`count` connections of distinct shards (none of shard 0: the fold's own target)."""
    connections, shards, spare = [], set(), []
    engine = get_engine()
    while len(connections) < count:
        connection = engine.connect()
        shard = connection.execute(text("SELECT pg_backend_pid() % 16")).scalar_one()
        connection.commit()
        if shard in shards or (avoid_shard_zero and shard == 0):
            spare.append(connection)
            continue
        shards.add(shard)
        connections.append(connection)
    for connection in spare:
        connection.close()
    return connections


def _rows() -> dict:
    return {
        (day, currency, shard): figures
        for day, currency, shard, *figures in sql(
            "SELECT day, currency, shard, created_count, completed_count, failed_count, volume_minor "
            "FROM analytics_daily ORDER BY 1, 2, 3"
        )
    }


def _daily(since, until) -> list[tuple]:
    with unit_of_work() as uow:
        figures = service.daily(uow.session, since, until, None)
    return [(f.day.isoformat(), f.currency, f.count, f.completed, f.failed, f.volume_minor) for f in figures]


def _expected(since, until) -> list[tuple]:
    from decimal import Decimal

    from db.core.currencies import exponent

    return [
        (
            e["date"],
            e["currency"],
            e["count"],
            e["completed"],
            e["failed"],
            int(Decimal(e["volume"]).scaleb(exponent(e["currency"]))),
        )
        for e in expected_daily(since, until)
    ]


def test_fold_merges_each_closed_day_into_one_row_keeps_every_figure_and_leaves_today(make):
    alice = make.user()
    source, target = make.account(alice, balance="100.00"), make.account(alice)
    backends = _backends(3)
    made: dict[int, list] = {}
    try:
        for i, connection in enumerate(backends):
            for days in (0, 1, 3):
                for currency in ("USD", "EUR"):
                    tx_id = connection.execute(
                        text(INSERT),
                        {
                            "a": source,
                            "b": target,
                            "amount": 10 + i,
                            "currency": currency,
                            "u": alice.id,
                            "days": days,
                        },
                    ).scalar_one()
                    made.setdefault(days, []).append(tx_id)
            connection.commit()
        # Late status changes of old transactions, from another backend than their creator's.
        backends[0].execute(text(FAIL), {"id": made[3][-1]})
        backends[0].commit()
    finally:
        for connection in backends:
            connection.close()
    usd_old = [
        t for t in made[1] if sql("SELECT currency FROM transactions WHERE id = :i", i=t)[0][0] == "USD"
    ]
    assert apply_now(usd_old[0]) == "completed"  # through the engine: volume too

    today, since = _today(), _today() - timedelta(days=5)
    before = _rows()
    assert len({s for (d, _, s) in before if d < today}) >= 3, before
    todays = {k: v for k, v in before.items() if k[0] == today}
    right = _daily(since, today)
    assert right == _expected(since, today)

    folded = fold_closed_days()

    after = _rows()
    closed = [(d, c) for (d, c, _) in before if d < today]
    assert folded == len(set(closed))  # one row written per closed (day, currency)
    assert {k for k in after if k[0] < today} == {(d, c, 0) for d, c in closed}
    assert {k: v for k, v in after.items() if k[0] == today} == todays
    assert _daily(since, today) == right == _expected(since, today)
    assert rollup_problems() == []

    assert fold_closed_days() == 0  # idempotent: nothing left to fold
    assert _rows() == after


def test_a_shard_row_a_writer_holds_is_skipped_then_folded_by_the_next_fold(make):
    alice = make.user()
    source, target = make.account(alice, balance="100.00"), make.account(alice)
    writer, other = _backends(2)
    try:
        params = {"a": source, "b": target, "amount": 5, "currency": "USD", "u": alice.id, "days": 2}
        late = writer.execute(text(INSERT), params).scalar_one()
        writer.commit()
        other.execute(text(INSERT), params)
        other.commit()
        day = _today() - timedelta(days=2)
        writer_shard = writer.execute(text("SELECT pg_backend_pid() % 16")).scalar_one()
        writer.execute(text(FAIL), {"id": late})  # holds its shard row of that day, uncommitted

        fold_closed_days()  # neither waits for the writer nor times out behind it

        shards = {s for (d, _, s) in _rows() if d == day}
        assert shards == {0, writer_shard}, shards
        assert _daily(day, day) == _expected(day, day)  # the failure not yet committed: counted nowhere
        writer.commit()
    finally:
        writer.close()
        other.close()
    assert _daily(day, day) == _expected(day, day) and _expected(day, day)[0][4] == 1
    assert fold_closed_days() == 1
    assert {s for (d, _, s) in _rows() if d == day} == {0}
    assert rollup_problems() == []


def test_folding_while_old_transactions_complete_and_fail_loses_and_doubles_nothing(make):
    alice = make.user()
    source, target = make.account(alice, balance="500.00"), make.account(alice)
    ids = bulk_pending(alice, source, target, 160, amount_minor=100)
    # Created over the past five days: their completions are late shares of closed days.
    sql(
        "UPDATE transactions SET created_at = now() - (1 + seq % 5) * interval '1 day' "
        "WHERE id = ANY(CAST(:ids AS uuid[]))",
        ids=ids,
    )
    to_apply, to_fail = ids[::2], ids[1::2]
    (writer,) = _backends(1)

    def apply_all() -> None:
        for tx_id in to_apply:
            apply_now(tx_id)

    def fail_all() -> None:
        for tx_id in to_fail:  # one committed statement each, on a shard other than 0
            writer.execute(text(FAIL), {"id": tx_id})
            writer.commit()

    threads = [threading.Thread(target=apply_all), threading.Thread(target=fail_all)]
    for thread in threads:
        thread.start()
    folded = 0
    try:
        while any(thread.is_alive() for thread in threads):
            folded += fold_closed_days()
    finally:
        for thread in threads:
            thread.join()
        writer.close()
    folded += fold_closed_days()

    assert folded > 0
    assert sql(
        "SELECT status, count(*) FROM transactions WHERE id = ANY(CAST(:ids AS uuid[])) GROUP BY 1 ORDER BY 1",
        ids=ids,
    ) == [
        ("completed", 80),
        ("failed", 80),
    ]
    today = _today()
    assert {s for (d, _, s) in _rows() if d < today} == {0}
    assert rollup_problems() == []
    assert _daily(today - timedelta(days=6), today) == _expected(today - timedelta(days=6), today)
