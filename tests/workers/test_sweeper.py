"""The sweeper re-enqueues `pending` rows whose message Redis lost, counts them, and
leaves everything else alone."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY
from sqlalchemy import text

from db.session import unit_of_work
from tests.fixtures import flush_namespace, transaction, wait_final
from tests.scheduling import entry_count, iso, later, transfer
from workers.maintenance import sweep_pending


def _age(tx_id, seconds: int) -> None:
    """As if nothing had touched the row for `seconds` (instead of sleeping)."""
    with unit_of_work() as uow:
        uow.session.execute(
            text("UPDATE transactions SET updated_at = now() - make_interval(secs => :s) WHERE id = :id"),
            {"s": seconds, "id": uuid.UUID(str(tx_id))},
        )


def _reenqueued() -> float:
    return REGISTRY.get_sample_value("ledgerq_sweeper_reenqueued_total") or 0.0


def test_a_pending_transfer_redis_lost_is_reenqueued_and_applied(client, make, worker):
    alice = make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    worker.pause()
    lost = transfer(client, alice, a, b, amount="3.00").json["id"]
    flush_namespace()  # Redis forgot the message (crash without AOF, FLUSHALL, ...)
    worker.resume()
    fresh = transfer(client, alice, a, b, scheduled_for=iso(later(hours=1))).json["id"]
    _age(lost, 60)
    _age(fresh, 60)  # scheduled, not pending: not the sweeper's business
    before = _reenqueued()

    assert sweep_pending() == 1
    assert _reenqueued() == before + 1
    assert wait_final([lost]) == {lost: "completed"}
    assert entry_count(lost) == 2
    assert sweep_pending() == 0  # completed rows are never swept
    assert transaction(fresh).status == "scheduled"


def test_recently_touched_pending_rows_are_left_to_the_queue(client, make):
    alice = make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    transfer(client, alice, a, b)
    assert sweep_pending() == 0


def test_a_swept_row_is_not_swept_again_at_once(client, make):
    alice = make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    tx_id = transfer(client, alice, a, b).json["id"]
    _age(tx_id, 60)
    assert sweep_pending() == 1
    assert sweep_pending() == 0  # the claim touched it: one re-enqueue per staleness period
