"""The rollups behind /analytics: sharded per backend and summed on read, checked by
`ledgerq verify`, and rebuilt exactly by `ledgerq analytics rebuild`, also while money
moves."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from db.analytics import service
from db.session import get_engine, unit_of_work
from tests.fixtures.analytics import expected_account, expected_daily, rollup_problems
from tests.fixtures.builders import pending_many
from tests.fixtures.ledger import apply_now, sql
from workers.transactions import process


def _today():
    return datetime.now(UTC).date()


def _daily_now() -> list[tuple]:
    today = _today()
    with unit_of_work() as uow:
        figures = service.daily(uow.session, today - timedelta(days=3), today, None)
    return [(f.day.isoformat(), f.currency, f.count, f.completed, f.failed, f.volume_minor) for f in figures]


def _as_tuples(expected: list[dict]) -> list[tuple]:
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
        for e in expected
    ]


def test_concurrent_backends_write_their_own_shards_and_reads_sum_them(make):
    alice = make.user()
    source, target = make.account(alice, balance="100.00"), make.account(alice)
    # Connections (backends) until two of them write different shards.
    connections, shards = [], set()
    engine = get_engine()
    while len(shards) < 3:
        connection = engine.connect()
        connections.append(connection)
        shards.add(connection.execute(text("SELECT pg_backend_pid() % 16")).scalar_one())
    try:
        for connection in connections:
            connection.execute(
                text(
                    "INSERT INTO transactions (id, type, status, from_account_id, to_account_id, "
                    "amount_minor, currency, created_by) VALUES (gen_random_uuid(), 'transfer', "
                    "'pending', :a, :b, 7, 'USD', :u)"
                ),
                {"a": source, "b": target, "u": alice.id},
            )
            connection.commit()
    finally:
        for connection in connections:
            connection.close()
    today = _today()
    rows = sql(
        "SELECT shard, created_count FROM analytics_daily WHERE day = :d AND currency = 'USD'", d=today
    )
    assert len({shard for shard, _ in rows}) >= 3, rows
    # The pending rows, then applied in one group by yet another backend.
    ids = [str(i) for (i,) in sql("SELECT id FROM transactions WHERE status = 'pending' ORDER BY seq")]
    process(uuid.UUID(ids[0]), claim_size=len(ids))
    assert sql("SELECT count(*) FROM transactions WHERE status = 'completed'")[0][0] == len(ids) + 1
    assert _daily_now() == _as_tuples(expected_daily(today - timedelta(days=3), today))
    assert _daily_now()[0][2:] == (
        len(connections) + 1,
        len(connections) + 1,
        0,
        10000 + 7 * len(connections),
    )
    assert rollup_problems() == []


def test_verify_names_a_wrong_rollup_and_rebuild_restores_the_direct_figures(make):
    alice = make.user()
    source, target = make.account(alice, balance="50.00"), make.account(alice)
    for tx_id in pending_many(alice, 3, "transfer", "4.00", from_account_id=source, to_account_id=target):
        assert apply_now(tx_id) == "completed"
    right = _daily_now()
    today = _today()
    sql("UPDATE analytics_daily SET completed_count = completed_count + 5, volume_minor = volume_minor - 1")
    sql("DELETE FROM analytics_account_daily WHERE account_id = :a", a=target)
    sql(
        "INSERT INTO analytics_daily (day, currency, shard, created_count) VALUES (:d, 'EUR', 3, 2)",
        d=today - timedelta(days=1),
    )
    problems = rollup_problems()
    assert any(f"daily {today} USD" in p for p in problems), problems
    assert any(f"daily {today - timedelta(days=1)} EUR" in p for p in problems), problems
    assert any(f"account {target} on {today}" in p for p in problems), problems

    with unit_of_work() as uow:
        assert service.rebuild(uow.session) == (2, 1)
    assert rollup_problems() == []
    assert _daily_now() == right
    with unit_of_work() as uow:
        figures = service.account_figures(uow.session, alice.principal, target, today, today)
    assert (
        (figures.incoming_minor, figures.outgoing_minor, figures.count)
        == expected_account(target, today, today)
        == (1200, 0, 3)
    )
    with unit_of_work() as uow:
        assert service.rebuild(uow.session) == (0, 0)  # nothing left to correct


def test_rebuild_while_transfers_are_applied_leaves_exact_figures(make):
    alice = make.user()
    source, target = make.account(alice, balance="500.00"), make.account(alice)
    ids = pending_many(alice, 120, "transfer", "1.00", from_account_id=source, to_account_id=target)
    sql("UPDATE analytics_daily SET created_count = created_count + 1000")  # something to correct

    def apply_all() -> None:
        for tx_id in ids:
            apply_now(tx_id)

    applier = threading.Thread(target=apply_all)
    applier.start()
    rebuilds = 0
    while applier.is_alive() or rebuilds == 0:
        with unit_of_work() as uow:
            service.rebuild(uow.session)
        rebuilds += 1
    applier.join()
    assert sql("SELECT count(*) FROM transactions WHERE status = 'completed'")[0][0] == 121
    assert rollup_problems() == []
    today = _today()
    assert _daily_now() == _as_tuples(expected_daily(today - timedelta(days=3), today))
    assert expected_account(target, today, today) == (12000, 0, 120)
