"""freeze / unfreeze / close: who may, what each state allows, and pending transfers."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from db.models import AuditLog
from tests.fixtures.broker import resend
from tests.fixtures.http import API, accepted, credit, debit, error_code, transfer
from tests.fixtures.ledger import apply_now, audit_log, balance, transaction, wait_final


def _post(client, user, account, action, body=None):
    kwargs = {"json": body} if body is not None else {}
    return client.post(f"{API}/accounts/{account}/{action}", headers=user.headers, **kwargs)


def _audit(account_id) -> list[AuditLog]:
    return audit_log(account_id, "account")


def test_freeze_and_unfreeze_with_reason_are_audited(client, make):
    finance = make.user("finance")
    account = make.account(make.user(), balance="5.00")

    frozen = _post(client, finance, account, "freeze", {"reason": "KYC review"})
    assert frozen.status_code == 200, frozen.json
    assert frozen.json["status"] == "frozen"
    assert frozen.json["balance"] == "5.00"
    unfrozen = _post(client, finance, account, "unfreeze")  # body is optional
    assert unfrozen.status_code == 200, unfrozen.json
    assert unfrozen.json["status"] == "active"

    changes = [(row.action, row.data, row.actor_id) for row in _audit(account)][-2:]
    assert changes == [
        ("account.frozen", {"from": "active", "to": "frozen", "reason": "KYC review"}, finance.id),
        ("account.unfrozen", {"from": "frozen", "to": "active", "reason": None}, finance.id),
    ]


@pytest.mark.parametrize("action", ["freeze", "unfreeze", "close"])
def test_customers_may_not_change_account_status(client, make, action):
    alice = make.user()
    account = make.account(alice)
    response = _post(client, alice, account, action)
    assert response.status_code == 403
    assert error_code(response) == "forbidden"


@pytest.mark.parametrize("action", ["freeze", "unfreeze", "close"])
def test_unknown_account_is_404(client, make, action):
    response = _post(client, make.user("admin"), uuid.uuid4(), action)
    assert response.status_code == 404


def test_a_frozen_account_accepts_no_money_in_or_out_at_request_time(client, make):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob, balance="10.00")
    assert _post(client, finance, b, "freeze").status_code == 200

    for response in (
        transfer(client, alice, a, b, "1.00"),  # in
        transfer(client, bob, b, a, "1.00"),  # out
        debit(client, bob, b, "1.00"),
        credit(client, finance, b, "1.00"),
    ):
        assert response.status_code == 422
        assert error_code(response) == "account_inactive"
    assert balance(a) == balance(b) == "10.00"


@pytest.mark.parametrize("frozen_side", ["source", "target"])
def test_freeze_while_transfers_are_pending_fails_them_when_applied(client, make, request, frozen_side):
    finance, alice = make.user("finance"), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(make.user(), balance="1.00")
    ids = [accepted(transfer(client, alice, a, b, "10.00")) for _ in range(3)]
    assert client.get(f"{API}/accounts/{a}", headers=alice.headers).json["available_balance"] == "70.00"

    assert _post(client, finance, a if frozen_side == "source" else b, "freeze").status_code == 200
    request.getfixturevalue("worker")
    resend(ids)

    assert wait_final(ids) == {i: "failed" for i in ids}
    assert {transaction(i).failure_code for i in ids} == {"account_inactive"}
    assert balance(a) == "100.00"
    assert balance(b) == "1.00"

    # Unfrozen, money moves again.
    _post(client, finance, a if frozen_side == "source" else b, "unfreeze")
    again = accepted(transfer(client, alice, a, b, "10.00"))
    assert wait_final([again]) == {again: "completed"}
    assert balance(a) == "90.00"


def test_close_with_a_non_zero_balance_is_409(client, make):
    finance = make.user("finance")
    account = make.account(make.user(), balance="0.01")
    response = _post(client, finance, account, "close", {"reason": "customer request"})
    assert response.status_code == 409
    assert error_code(response) == "conflict"
    assert response.json["error"]["details"]["balance"] == "0.01"
    assert client.get(f"{API}/accounts/{account}", headers=finance.headers).json["status"] == "active"


def test_close_from_zero_is_final_and_blocks_new_transactions(client, make):
    finance, alice = make.user("finance"), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(alice)
    # Empty it first: money out, then close.
    assert apply_now(accepted(transfer(client, alice, a, b, "10.00"))) == "completed"

    closed = _post(client, finance, a, "close", {"reason": "customer request"})
    assert closed.status_code == 200, closed.json
    assert closed.json["status"] == "closed"
    assert _audit(a)[-1].data == {"from": "active", "to": "closed", "reason": "customer request"}

    for action in ("unfreeze", "freeze", "close"):
        response = _post(client, finance, a, action)
        assert response.status_code == 409, action
        assert response.json["error"]["details"]["status"] == "closed"
    for response in (transfer(client, alice, b, a, "1.00"), credit(client, finance, a, "1.00")):
        assert response.status_code == 422
        assert error_code(response) == "account_inactive"


def test_a_frozen_account_can_be_closed_from_zero(client, make):
    finance = make.user("finance")
    account = make.account(make.user())
    assert _post(client, finance, account, "freeze").status_code == 200
    assert _post(client, finance, account, "close").json["status"] == "closed"


def test_repeated_state_change_is_409(client, make):
    finance = make.user("admin")
    account = make.account(make.user())
    assert _post(client, finance, account, "unfreeze").status_code == 409
    assert _post(client, finance, account, "freeze").status_code == 200
    assert _post(client, finance, account, "freeze").status_code == 409


def test_system_accounts_cannot_be_frozen(client, make):
    finance = make.user("finance")
    make.account(make.user())  # creates the USD system account
    system = client.get(f"{API}/accounts?kind=system", headers=finance.headers).json["items"][0]
    assert _post(client, finance, system["id"], "freeze").status_code == 409


def test_a_pending_credit_to_an_account_closed_meanwhile_fails(client, make):
    finance = make.user("finance")
    account = make.account(make.user())
    tx = accepted(credit(client, finance, account, "5.00"))
    assert _post(client, finance, account, "close").status_code == 200
    assert apply_now(tx) == "failed"
    assert transaction(tx).failure_code == "account_inactive"
    assert balance(account) == "0.00"


def test_freeze_waits_for_the_row_lock_a_transfer_holds(app, make):
    """The state change takes the account's row lock, so it serializes with the worker."""
    from db.accounts.repository import lock_in_order
    from db.session import session_factory

    finance = make.user("finance")
    account = make.account(make.user())
    holder = session_factory()()
    lock_in_order(holder, [account])  # what the worker holds while applying a transfer
    result = {}

    def freeze():
        result["response"] = app.test_client().post(
            f"{API}/accounts/{account}/freeze", headers=finance.headers
        )

    thread = threading.Thread(target=freeze)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive(), "freeze did not wait for the account's row lock"
    holder.commit()
    holder.close()
    thread.join(10)
    assert result["response"].status_code == 200
    assert result["response"].json["status"] == "frozen"
