"""POST /transactions/{id}/cancel: decided under the row lock the worker takes, so a
cancelled transaction never moves money and a completed one is never cancelled."""

from __future__ import annotations

import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from db.ledger.posting import apply_transaction
from db.ledger.verify import verify_ledger
from db.session import unit_of_work
from db.transactions.service import cancel
from tests.fixtures.http import transfer
from tests.fixtures.ledger import audit_actions, balance, entry_count, transaction, wait_final
from tests.fixtures.scheduling import iso, later


def _cancel(client, user, tx_id):
    return client.post(f"/api/v1/transactions/{tx_id}/cancel", headers=user.headers)


def test_cancel_a_scheduled_transfer(client, make):
    alice = make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    tx = transfer(client, alice, a, b, scheduled_for=iso(later(days=1))).json

    response = _cancel(client, alice, tx["id"])
    assert response.status_code == 200, response.json
    assert response.json["status"] == "cancelled"
    assert transaction(tx["id"]).status == "cancelled"
    assert "transaction.cancelled" in audit_actions(tx["id"])
    assert entry_count(tx["id"]) == 0 and balance(a) == "10.00"


def test_a_cancelled_pending_transfer_is_never_applied(client, make):
    from workers.transactions import apply_transaction as apply_actor

    alice = make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    tx = transfer(client, alice, a, b).json  # pending, its message waiting in Redis
    assert _cancel(client, alice, tx["id"]).status_code == 200

    apply_actor(tx["id"])  # the message is delivered after all
    assert transaction(tx["id"]).status == "cancelled"
    assert entry_count(tx["id"]) == 0 and balance(a) == "10.00"
    available = client.get(f"/api/v1/accounts/{a}", headers=alice.headers).json["available_balance"]
    assert available == "10.00"


def test_cancel_anything_final_is_409(client, make, worker):
    alice = make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    done = transfer(client, alice, a, b).json
    failed = transfer(client, alice, a, b, amount="500.00").json
    wait_final([done["id"], failed["id"]])

    for tx_id, status in ((done["id"], "completed"), (failed["id"], "failed")):
        response = _cancel(client, alice, tx_id)
        assert response.status_code == 409
        assert response.json["error"]["code"] == "conflict"
        assert response.json["error"]["details"]["status"] == status
        assert transaction(tx_id).status == status

    scheduled = transfer(client, alice, a, b, scheduled_for=iso(later(days=1))).json
    assert _cancel(client, alice, scheduled["id"]).status_code == 200
    assert _cancel(client, alice, scheduled["id"]).status_code == 409  # already cancelled


def test_customers_cancel_only_what_they_sent(client, make):
    alice, bob, mallory = make.user(), make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    tx = transfer(client, alice, a, b, scheduled_for=iso(later(days=1))).json

    assert _cancel(client, mallory, tx["id"]).status_code == 404  # a stranger: no such thing
    assert _cancel(client, bob, tx["id"]).status_code == 404  # the recipient cannot stop it
    assert _cancel(client, alice, uuid.uuid4()).status_code == 404
    assert transaction(tx["id"]).status == "scheduled"
    assert _cancel(client, make.user("finance"), tx["id"]).status_code == 200


def test_cancel_waits_for_a_worker_holding_the_row_lock_then_409(client, make):
    """The worker has locked the row and is applying it: the cancel must not win."""
    alice = make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    tx = transfer(client, alice, a, b).json
    tx_id = uuid.UUID(tx["id"])

    result = {}
    with unit_of_work() as worker_uow:
        assert apply_transaction(worker_uow.session, tx_id).status == "completed"  # locked, not committed
        thread = threading.Thread(
            target=lambda: result.setdefault(
                "response", _cancel(client.application.test_client(), alice, tx_id)
            )
        )
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive(), "cancel must wait for the worker's row lock"
    thread.join(timeout=10)
    assert result["response"].status_code == 409
    assert transaction(tx_id).status == "completed"
    assert entry_count(tx_id) == 2


def test_worker_waits_for_a_cancel_holding_the_row_lock_then_no_ops(client, make):
    alice = make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    tx_id = uuid.UUID(transfer(client, alice, a, b).json["id"])

    outcome = {}

    def worker():
        with unit_of_work() as uow:
            outcome["value"] = apply_transaction(uow.session, tx_id)

    with unit_of_work() as api_uow:
        assert cancel(api_uow.session, alice.principal, tx_id).status == "cancelled"  # locked, not committed
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive(), "the worker must wait for the cancel's row lock"
    thread.join(timeout=10)
    assert outcome["value"].status == "noop"
    assert transaction(tx_id).status == "cancelled"
    assert entry_count(tx_id) == 0 and balance(a) == "10.00"


def test_many_cancels_racing_the_real_worker(app, make, monkeypatch):
    """Queue transfers, then start a real worker and cancel them all at the same moment:
    each ends either cancelled with no entries (cancel said 200) or applied (cancel said
    409), never both, and the ledger balances."""
    from dramatiq import Worker

    from db.core.config import get_settings
    from tests.fixtures.broker import flush_namespace
    from workers import broker

    # Small groups: with the default claim (100) the worker's first group takes all 80
    # transfers before any cancel arrives, and there is no race to observe.
    settings = get_settings().model_copy(update={"apply_claim_size": 3})
    monkeypatch.setattr("workers.transactions.get_settings", lambda: settings)

    alice = make.user()
    a, b = make.account(alice, balance="1000.00"), make.account(make.user())
    client = app.test_client()
    flush_namespace()
    ids = [transfer(client, alice, a, b, amount="1.00").json["id"] for _ in range(80)]
    random.shuffle(ids)  # cancel in an order unrelated to the worker's FIFO

    def cancel_one(tx_id):
        return tx_id, _cancel(app.test_client(), alice, tx_id).status_code

    real_worker = Worker(broker, worker_threads=4, worker_timeout=100)
    with ThreadPoolExecutor(max_workers=8) as pool:
        real_worker.start()
        try:
            answers = dict(pool.map(cancel_one, ids))
            final = wait_final(ids)
        finally:
            real_worker.stop(timeout=10_000)

    assert set(answers.values()) <= {200, 409}
    for tx_id in ids:
        if answers[tx_id] == 200:
            assert final[tx_id] == "cancelled", tx_id
            assert entry_count(tx_id) == 0, tx_id
        else:
            assert final[tx_id] == "completed", tx_id
            assert entry_count(tx_id) == 2, tx_id
    completed = sum(1 for status in final.values() if status == "completed")
    assert 0 < completed < len(ids), "the race did not happen: tune the sizes"
    assert balance(b) == f"{completed}.00"
    assert balance(a) == f"{1000 - completed}.00"
    with unit_of_work() as uow:
        assert verify_ledger(uow.session) == []


def test_a_customer_cannot_cancel_what_finance_set_up_from_their_account(client, make):
    alice, finance = make.user(), make.user("finance")
    a, fees = make.account(alice, balance="10.00"), make.account(make.user())
    fee = transfer(client, finance, a, fees, amount="2.00", scheduled_for=iso(later(days=1))).json

    assert _cancel(client, alice, fee["id"]).status_code == 404  # she sees it, but it is finance's
    assert transaction(fee["id"]).status == "scheduled"
    assert _cancel(client, make.user("admin"), fee["id"]).status_code == 200


def test_nobody_cancels_a_single_line_of_a_batch(client, make):
    from tests.fixtures.batches import csv_bytes, line_statuses, upload

    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a, b = make.account(alice, balance="50.00"), make.account(bob)
    batch = upload(
        client,
        finance,
        csv_bytes(f"{a},{b},1.00,USD,l1", f"{a},{b},2.00,USD,l2"),
        mode="atomic",
        scheduled_for=iso(later(days=1)),
    ).json
    line = client.get(
        "/api/v1/transactions/history", query_string={"batch_id": batch["id"]}, headers=finance.headers
    ).json["items"][0]

    assert _cancel(client, alice, line["id"]).status_code == 404  # the source owner: not hers
    for staff in (finance, make.user("admin")):
        response = _cancel(client, staff, line["id"])
        assert response.status_code == 409, response.json
        assert response.json["error"]["details"]["batch_id"] == batch["id"]
    assert line_statuses(batch["id"]) == ["scheduled", "scheduled"]


def test_a_dead_lettered_transfer_can_be_cancelled_so_no_later_retry_pays_it(client, make):
    from db.core.errors import Conflict
    from db.transactions import repository as transactions_repo
    from db.transactions.dead_letters import reopen

    alice = make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    tx = transfer(client, alice, a, b).json
    with unit_of_work() as uow:
        assert transactions_repo.mark_dead_lettered(uow.session, uuid.UUID(tx["id"]), "OperationalError")

    response = _cancel(client, alice, tx["id"])  # the client re-sends it under a new key instead
    assert response.status_code == 200, response.json
    assert transaction(tx["id"]).status == "cancelled"
    with unit_of_work() as uow:  # a later `dlq retry --all` cannot pay it too
        try:
            reopen(uow.session, uuid.UUID(tx["id"]), None)
            raise AssertionError("a cancelled transfer was reopened")
        except Conflict:
            pass
    assert entry_count(tx["id"]) == 0 and balance(a) == "10.00"
