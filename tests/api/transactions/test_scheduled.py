"""One-shot scheduled transfers: horizon, immediate-when-past, and release when due."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.fixtures.http import transfer
from tests.fixtures.ledger import audit_actions, balance, entry_count, transaction, wait_final
from tests.fixtures.scheduling import iso, later, scheduler_process, wait_until


def test_scheduled_for_beyond_the_horizon_is_422(client, make):
    alice = make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())

    too_far = transfer(client, alice, a, b, scheduled_for=iso(later(days=366)))
    assert too_far.status_code == 422
    assert too_far.json["error"]["code"] == "validation_error"
    assert "scheduled_for" in too_far.json["error"]["details"]

    within = transfer(client, alice, a, b, scheduled_for=iso(later(days=364)))
    assert within.status_code == 202
    assert within.json["status"] == "scheduled"


def test_scheduled_for_in_the_past_or_now_is_immediate(client, make, worker):
    alice = make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())

    past = transfer(client, alice, a, b, scheduled_for=iso(later(hours=-1)))
    right_now = transfer(client, alice, a, b, scheduled_for=iso(later()))
    for response in (past, right_now):
        assert response.status_code == 202
        assert response.json["status"] == "pending"
        assert response.json["scheduled_for"] is None
    assert wait_final([past.json["id"], right_now.json["id"]]) == {
        past.json["id"]: "completed",
        right_now.json["id"]: "completed",
    }


def test_due_transfer_is_released_at_its_time_with_a_controlled_clock(client, make, worker):
    from workers.maintenance import release_due_scheduled

    alice = make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    response = transfer(client, alice, a, b, amount="4.00", scheduled_for=iso(later(hours=1)))
    assert response.status_code == 202 and response.json["status"] == "scheduled"
    tx_id = response.json["id"]
    due = datetime.fromisoformat(response.json["scheduled_for"])

    assert release_due_scheduled(due - timedelta(seconds=1)) == 0
    assert transaction(tx_id).status == "scheduled"
    assert balance(a) == "10.00"

    assert release_due_scheduled(due) == 1
    assert transaction(tx_id).status in ("pending", "completed")
    assert wait_final([tx_id]) == {tx_id: "completed"}
    assert balance(a) == "6.00"
    # A second tick (or a second scheduler) finds nothing left to release.
    assert release_due_scheduled(due + timedelta(minutes=5)) == 0
    assert audit_actions(tx_id).count("transaction.released") == 1
    assert entry_count(tx_id) == 2


def test_scheduler_releases_a_due_transfer_within_about_a_second(client, make, worker):
    alice = make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    response = transfer(client, alice, a, b, scheduled_for=iso(later(seconds=2)))
    tx_id = response.json["id"]
    due = datetime.fromisoformat(response.json["scheduled_for"])

    with scheduler_process():
        assert wait_final([tx_id], timeout=10) == {tx_id: "completed"}
    completed = transaction(tx_id).completed_at
    assert completed >= due
    # One 0.25 s tick, a message hop and the posting: well inside the ~1 s promise.
    assert completed - due < timedelta(seconds=1.5), completed - due


def test_release_is_not_early_and_leaves_cancelled_rows_alone(client, make):
    from workers.maintenance import release_due_scheduled

    alice = make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    first = transfer(client, alice, a, b, scheduled_for=iso(later(minutes=10))).json
    second = transfer(client, alice, a, b, scheduled_for=iso(later(minutes=10))).json
    assert (
        client.post(f"/api/v1/transactions/{second['id']}/cancel", headers=alice.headers).status_code == 200
    )

    assert release_due_scheduled(later(minutes=11)) == 1
    assert transaction(second["id"]).status == "cancelled"
    assert wait_until(lambda: transaction(first["id"]).status == "pending", timeout=1)
