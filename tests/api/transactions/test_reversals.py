"""POST /transactions/{id}/reverse: finance moves a completed transaction's money back."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from db.models import AuditLog
from db.session import unit_of_work
from tests.fixtures.http import accepted, transfer
from tests.fixtures.ledger import apply_now, balance, transaction, wait_final


def _transfer(client, sender, source, target, amount="30.00"):
    return accepted(transfer(client, sender, source, target, amount))


def _reverse(client, user, tx_id, key=None):
    headers = dict(user.headers)
    if key:
        headers["Idempotency-Key"] = key
    return client.post(f"/api/v1/transactions/{tx_id}/reverse", headers=headers)


def _completed_transfer(client, make, amount="30.00"):
    alice, bob = make.user(), make.user()
    a = make.account(alice, balance="100.00")
    b = make.account(bob)
    tx_id = _transfer(client, alice, a, b, amount)
    assert apply_now(tx_id) == "completed"
    return alice, bob, a, b, tx_id


def test_reversal_moves_the_money_back_and_marks_the_original(client, make, worker):
    alice, bob = make.user(), make.user()
    a = make.account(alice, balance="100.00")
    b = make.account(bob)
    tx_id = _transfer(client, alice, a, b, "30.25")
    assert wait_final([tx_id]) == {tx_id: "completed"}
    finance = make.user("finance")

    response = _reverse(client, finance, tx_id)
    assert response.status_code == 202, response.json
    reversal = response.json
    assert response.headers["Location"] == f"/api/v1/transactions/{reversal['id']}"
    assert reversal["type"] == "reversal" and reversal["status"] == "pending"
    assert reversal["reverses"] == tx_id and reversal["reversed_by"] is None
    assert (reversal["from_account_id"], reversal["to_account_id"]) == (str(b), str(a))
    assert (reversal["amount"], reversal["currency"]) == ("30.25", "USD")

    polled = client.get(f"/api/v1/transactions/{reversal['id']}?wait=10", headers=finance.headers)
    assert polled.json["status"] == "completed", polled.json
    assert balance(a) == "100.00" and balance(b) == "0.00"

    original = client.get(f"/api/v1/transactions/{tx_id}", headers=alice.headers).json
    assert original["status"] == "completed" and original["reversed_by"] == reversal["id"]
    history = client.get(
        "/api/v1/transactions/history", query_string={"account_id": str(a)}, headers=alice.headers
    )
    by_id = {item["id"]: item for item in history.json["items"]}
    assert by_id[tx_id]["reversed_by"] == reversal["id"]
    assert by_id[reversal["id"]]["reversed_by"] is None

    with unit_of_work() as uow:
        audited = uow.session.scalars(select(AuditLog).where(AuditLog.entity_id == reversal["id"])).all()
        actions = {row.action: row for row in audited}
    assert actions["transaction.requested.reversal"].data["reverses"] == tx_id
    assert actions["transaction.requested.reversal"].actor_id == finance.id


def test_a_transaction_is_reversed_at_most_once(client, make):
    *_, tx_id = _completed_transfer(client, make)
    finance, admin = make.user("finance"), make.user("admin")
    first = _reverse(client, finance, tx_id)
    assert first.status_code == 202, first.json
    second = _reverse(client, admin, tx_id)
    assert second.status_code == 409, second.json
    assert second.json["error"]["code"] == "conflict"
    assert second.json["error"]["details"]["reversed_by"] == first.json["id"]


def test_a_reversal_cannot_be_reversed(client, make):
    *_, tx_id = _completed_transfer(client, make)
    finance = make.user("finance")
    reversal_id = _reverse(client, finance, tx_id).json["id"]
    assert apply_now(reversal_id) == "completed"
    response = _reverse(client, finance, reversal_id)
    assert response.status_code == 409 and response.json["error"]["code"] == "conflict"


def test_only_completed_transactions_can_be_reversed(client, make):
    alice, bob = make.user(), make.user()
    a = make.account(alice, balance="10.00")
    b = make.account(bob)
    finance = make.user("finance")
    pending_id = _transfer(client, alice, a, b, "5.00")  # no worker: stays pending
    failed_id = _transfer(client, alice, a, b, "50.00")
    assert apply_now(failed_id) == "failed"
    for tx_id, status in ((pending_id, "pending"), (failed_id, "failed")):
        response = _reverse(client, finance, tx_id)
        assert response.status_code == 409, response.json
        assert response.json["error"]["code"] == "conflict"
        assert response.json["error"]["details"]["status"] == status
    assert transaction(pending_id).status == "pending"


def test_customers_are_refused_and_unknown_ids_are_404(client, make):
    alice, bob, a, b, tx_id = _completed_transfer(client, make)
    for customer in (alice, bob):
        response = _reverse(client, customer, tx_id)
        assert response.status_code == 403 and response.json["error"]["code"] == "forbidden"
    missing = _reverse(client, make.user("finance"), uuid.uuid4())
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"
    assert balance(b) == "30.00"


def test_idempotent_replay(client, make):
    *_, tx_id = _completed_transfer(client, make)
    other_id = _completed_transfer(client, make)[-1]
    finance = make.user("finance")
    first = _reverse(client, finance, tx_id, key="rev-1")
    assert first.status_code == 202, first.json
    again = _reverse(client, finance, tx_id, key="rev-1")
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json["id"] == first.json["id"]
    reused = _reverse(client, finance, other_id, key="rev-1")
    assert reused.status_code == 422 and reused.json["error"]["code"] == "idempotency_key_reused"
    bad_key = _reverse(client, finance, other_id, key="has space")
    assert bad_key.status_code == 422


def test_reversal_of_credit_and_debit_uses_the_system_account(client, make):
    alice = make.user()
    a = make.account(alice, balance="40.00")  # a completed credit
    finance = make.user("finance")
    credit_id = client.get(
        "/api/v1/transactions/history", query_string={"account_id": str(a)}, headers=alice.headers
    ).json["items"][0]["id"]
    reversal = _reverse(client, finance, credit_id)
    assert reversal.status_code == 202, reversal.json
    assert apply_now(reversal.json["id"]) == "completed"
    assert balance(a) == "0.00"

    make.fund(a, "20.00")
    debit = client.post(
        "/api/v1/transactions/debit",
        json={"account_id": str(a), "amount": "5.00", "currency": "USD"},
        headers=alice.headers,
    ).json
    assert apply_now(debit["id"]) == "completed"
    reversal = _reverse(client, finance, debit["id"])
    assert reversal.status_code == 202, reversal.json
    assert apply_now(reversal.json["id"]) == "completed"
    assert balance(a) == "20.00"


def test_recipient_without_funds(client, make):
    """Finance reverses only money that is still there: 422 at request time when visibly
    spent; `failed` `insufficient_funds` when it is spent while the reversal waits."""
    alice, bob, a, b, tx_id = _completed_transfer(client, make)
    carol = make.user()
    c = make.account(carol)
    finance = make.user("finance")

    reversal_id = _reverse(client, finance, tx_id).json["id"]
    spend_id = _transfer(client, bob, b, c, "30.00")
    assert apply_now(spend_id) == "completed"  # applied before the reversal
    assert apply_now(reversal_id) == "failed"
    failed = transaction(reversal_id)
    assert failed.failure_code == "insufficient_funds"
    assert (balance(a), balance(b), balance(c)) == ("70.00", "0.00", "30.00")

    # Visibly spent at request time (a pending transfer out counts): refused, nothing recorded.
    _, dave, _, d, other_id = _completed_transfer(client, make)
    _transfer(client, dave, d, c, "25.00")  # pending, no worker
    refused = _reverse(client, finance, other_id)
    assert refused.status_code == 422 and refused.json["error"]["code"] == "insufficient_funds"
    assert client.get(f"/api/v1/transactions/{other_id}", headers=finance.headers).json["reversed_by"] is None


def test_frozen_accounts(client, make):
    """A frozen account fails fast (422 `account_inactive`); one frozen while the reversal
    waits makes it `failed` `account_inactive`."""
    alice, bob, a, b, tx_id = _completed_transfer(client, make)
    finance = make.user("finance")
    reversal_id = _reverse(client, finance, tx_id).json["id"]
    assert client.post(f"/api/v1/accounts/{a}/freeze", headers=finance.headers).status_code == 200
    assert apply_now(reversal_id) == "failed"
    assert transaction(reversal_id).failure_code == "account_inactive"
    assert (balance(a), balance(b)) == ("70.00", "30.00")

    *_, c, other_id = _completed_transfer(client, make)
    assert client.post(f"/api/v1/accounts/{c}/freeze", headers=finance.headers).status_code == 200
    refused = _reverse(client, finance, other_id)
    assert refused.status_code == 422 and refused.json["error"]["code"] == "account_inactive"


def test_a_failed_reversal_does_not_block_a_later_one(client, make):
    """A reversal that failed moved nothing: once the money is back, finance can reverse
    again, and `reversed_by` names the effective reversal, never the failed one."""
    alice, bob, a, b, tx_id = _completed_transfer(client, make)
    carol = make.user()
    c = make.account(carol)
    finance = make.user("finance")

    first = _reverse(client, finance, tx_id).json["id"]
    spend_id = _transfer(client, bob, b, c, "30.00")
    assert apply_now(spend_id) == "completed"
    assert apply_now(first) == "failed"
    assert client.get(f"/api/v1/transactions/{tx_id}", headers=finance.headers).json["reversed_by"] is None

    make.fund(b, "30.00")  # the money is there again
    second = _reverse(client, finance, tx_id)
    assert second.status_code == 202, second.json
    assert apply_now(second.json["id"]) == "completed"
    assert (
        client.get(f"/api/v1/transactions/{tx_id}", headers=finance.headers).json["reversed_by"]
        == second.json["id"]
    )
    assert balance(a) == "100.00"
    third = _reverse(client, finance, tx_id)  # the effective reversal still counts once
    assert third.status_code == 409


def test_the_recipient_cannot_cancel_the_reversal_that_takes_the_money_back(client, make):
    alice, bob, a, b, tx_id = _completed_transfer(client, make)
    finance = make.user("finance")
    reversal_id = _reverse(client, finance, tx_id).json["id"]  # pending: no worker running

    refused = client.post(f"/api/v1/transactions/{reversal_id}/cancel", headers=bob.headers)
    assert refused.status_code == 404 and refused.json["error"]["code"] == "not_found"
    assert transaction(reversal_id).status == "pending"
    assert apply_now(reversal_id) == "completed"
    assert balance(b) == "0.00"
