"""The stale-pending sweeper: a transfer accepted while Redis was unreachable is not
lost, and rows that are fresh (or still being retried) are left alone."""

from __future__ import annotations

import time

import redis

from tests.fixtures.builders import pending_transfer
from tests.fixtures.http import transfer
from tests.fixtures.infra import closed_port
from tests.fixtures.ledger import balance, sql, transaction, wait_final
from workers import broker
from workers.maintenance import sweep_pending, sweep_stale_pending


def _queued_transaction_messages() -> int:
    """Messages waiting in the `transactions` queue (and its delay queue) in Redis."""
    ns = broker.namespace
    return broker.client.hlen(f"{ns}:transactions.msgs") + broker.client.hlen(f"{ns}:transactions.DQ.msgs")


def _age(tx_id: str, seconds: float) -> None:
    """Pretend nothing touched the row for `seconds` (instead of sleeping that long)."""
    sql(
        "UPDATE transactions SET updated_at = now() - make_interval(secs => :s) WHERE id = :id",
        s=seconds,
        id=tx_id,
    )


def test_transfer_accepted_while_redis_is_down_is_swept_and_completes(make, monkeypatch, request):
    from api import create_app
    from db.core.config import Settings

    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    # Redis unreachable for the whole API: the broker's client (built from the URL, as
    # RedisBroker does) and the app's own Redis users (rate-limit counters).
    dead_url = f"redis://127.0.0.1:{closed_port()}/0"
    monkeypatch.setattr(broker.client, "connection_pool", redis.ConnectionPool.from_url(dead_url))
    client = create_app(Settings(REDIS_URL=dead_url)).test_client()

    started = time.monotonic()
    response = transfer(client, alice, a, b, "40.00")

    assert time.monotonic() - started < 3  # no hanging on the dead Redis
    assert response.status_code == 202, response.json
    tx_id = response.json["id"]
    assert response.json["status"] == "pending"
    monkeypatch.undo()  # Redis is back
    assert transaction(tx_id).status == "pending"
    assert _queued_transaction_messages() == 0  # the message really was lost

    worker = request.getfixturevalue("worker")
    _age(tx_id, 5)
    sweep_pending.send()  # the scheduler's tick, run by the real worker

    assert wait_final([tx_id]) == {tx_id: "completed"}
    assert (balance(a), balance(b)) == ("60.00", "40.00")
    assert transaction(tx_id).attempts == 1
    worker.join()


def test_sweeper_leaves_a_fresh_pending_row_alone(make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    tx_id = pending_transfer(alice, a, b, "10.00")

    assert sweep_stale_pending() == 0
    assert _queued_transaction_messages() == 0

    _age(tx_id, 1.5)  # past SWEEPER_STALE_AFTER_SECONDS=1
    assert sweep_stale_pending() == 1
    assert _queued_transaction_messages() == 1
    assert sweep_stale_pending() == 0  # claiming touched the row: not re-sent every tick
    assert _queued_transaction_messages() == 1


def test_sweeper_leaves_a_row_to_the_retries_during_their_backoff(make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    tx_id = pending_transfer(alice, a, b, "10.00")
    # Three failed attempts: Dramatiq may wait up to min(50 ms * 2**2, 200 ms) to retry.
    sql("UPDATE transactions SET attempts = 3 WHERE id = :id", id=tx_id)

    _age(tx_id, 1.1)
    assert sweep_stale_pending() == 0
    _age(tx_id, 1.5)
    assert sweep_stale_pending() == 1


def test_sweeper_counts_what_it_reenqueues_and_leaves_scheduled_rows_alone(client, make):
    from datetime import UTC, datetime, timedelta

    from prometheus_client import REGISTRY

    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    stale = pending_transfer(alice, a, b, "10.00")
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    scheduled = transfer(client, alice, a, b, "10.00", scheduled_for=later).json["id"]
    _age(stale, 5)
    _age(scheduled, 5)  # old, but `scheduled`: the release tick's business, not the sweeper's
    before = REGISTRY.get_sample_value("ledgerq_sweeper_reenqueued_total") or 0.0

    assert sweep_stale_pending() == 1
    assert REGISTRY.get_sample_value("ledgerq_sweeper_reenqueued_total") == before + 1
    assert transaction(scheduled).status == "scheduled"
    assert _queued_transaction_messages() == 1
