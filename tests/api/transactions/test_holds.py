"""Holds (two-phase transfers) through the API: hold, capture, void and expiry, and
what a held amount does to the account's available balance and funds checks."""

from __future__ import annotations

from datetime import timedelta

from tests.fixtures.http import accepted, assert_error, debit, set_limits, transfer
from tests.fixtures.ledger import apply_now, balance, entry_count, ledger_problems, sql, transaction

API = "/api/v1"


def hold(client, user, source, target, amount, **fields):
    body = {"from_account_id": str(source), "to_account_id": str(target), "amount": amount, "currency": "USD"}
    headers = {**user.headers, **fields.pop("headers", {})}
    return client.post(f"{API}/transactions/hold", json={**body, **fields}, headers=headers)


def capture(client, user, hold_id, amount=None, key=None):
    headers = {**user.headers, **({"Idempotency-Key": key} if key else {})}
    body = {} if amount is None else {"amount": amount}
    return client.post(f"{API}/transactions/{hold_id}/capture", json=body, headers=headers)


def void(client, user, hold_id):
    return client.post(f"{API}/transactions/{hold_id}/void", headers=user.headers)


def held_hold(client, make, amount="30.00", funds="100.00"):
    alice, bob = make.user(), make.user()
    source = make.account(alice, balance=funds)
    target = make.account(bob)
    hold_id = accepted(hold(client, alice, source, target, amount))
    assert apply_now(hold_id) == "held"
    return alice, bob, source, target, hold_id


def account(client, user, account_id):
    return client.get(f"{API}/accounts/{account_id}", headers=user.headers).json


def get(client, user, tx_id):
    return client.get(f"{API}/transactions/{tx_id}", headers=user.headers).json


def test_the_whole_lifecycle_reserves_then_moves_the_money_with_two_entries(client, make):
    alice, bob = make.user(), make.user()
    source = make.account(alice, balance="100.00")
    target = make.account(bob)

    response = hold(client, alice, source, target, "30.00", reference="order 7")
    assert response.status_code == 202
    created = response.json
    assert (created["type"], created["status"], created["held_amount"], created["captured_amount"]) == (
        "hold",
        "pending",
        "0.00",
        "0.00",
    )
    assert created["expires_at"] is not None and created["captures"] is None
    assert response.headers["Location"] == f"/api/v1/transactions/{created['id']}"

    assert apply_now(created["id"]) == "held"
    held = get(client, alice, created["id"])
    assert (held["status"], held["held_amount"], held["captured_amount"]) == ("held", "30.00", "0.00")
    assert (
        account(client, alice, source)["balance"],
        account(client, alice, source)["available_balance"],
    ) == (
        "100.00",
        "70.00",
    )
    current = client.get(f"{API}/balances/current?account_id={source}", headers=alice.headers).json
    assert (current["balance"], current["available_balance"]) == ("100.00", "70.00")
    assert entry_count(created["id"]) == 0

    response = capture(client, alice, created["id"])
    assert response.status_code == 202, response.json
    cap = response.json
    assert (cap["type"], cap["status"], cap["amount"], cap["captures"]) == (
        "capture",
        "pending",
        "30.00",
        created["id"],
    )
    assert apply_now(cap["id"]) == "completed"
    assert entry_count(cap["id"]) == 2
    after = get(client, alice, created["id"])
    assert (after["status"], after["held_amount"], after["captured_amount"]) == ("captured", "0.00", "30.00")
    assert after["completed_at"] is not None
    assert (balance(source), balance(target)) == ("70.00", "30.00")
    assert account(client, alice, source)["available_balance"] == "70.00"
    events = {
        (kind, data["status"])
        for kind, data in sql(
            "SELECT type, data FROM events WHERE data->>'id' IN (:h, :c)", h=created["id"], c=cap["id"]
        )
    }
    assert events >= {
        ("transaction.created", "pending"),
        ("transaction.held", "held"),
        ("transaction.completed", "completed"),
        ("transaction.captured", "captured"),
    }
    assert ledger_problems() == []


def test_a_partial_capture_moves_the_amount_and_releases_the_remainder(client, make):
    alice, _, source, target, hold_id = held_hold(client, make, "50.00")
    cap_id = accepted(capture(client, alice, hold_id, "20.00"))
    assert apply_now(cap_id) == "completed"
    after = get(client, alice, hold_id)
    assert (after["status"], after["held_amount"], after["captured_amount"]) == ("captured", "0.00", "20.00")
    assert (balance(source), balance(target)) == ("80.00", "20.00")
    assert account(client, alice, source)["available_balance"] == "80.00"
    assert ledger_problems() == []


def test_capturing_more_than_is_held_is_refused_and_records_nothing(client, make):
    alice, _, source, _, hold_id = held_hold(client, make, "30.00")
    response = capture(client, alice, hold_id, "30.01")
    assert_error(response, 422, "validation_error")
    assert "amount" in response.json["error"]["details"]
    assert sql("SELECT count(*) FROM transactions WHERE captures = :h", h=hold_id) == [(0,)]
    assert get(client, alice, hold_id)["status"] == "held"


def test_a_hold_is_captured_once(client, make):
    alice, _, _, _, hold_id = held_hold(client, make, "30.00")
    first = accepted(capture(client, alice, hold_id, "10.00"))
    assert_error(capture(client, alice, hold_id, "10.00"), 409, "conflict")  # while pending
    assert apply_now(first) == "completed"
    assert_error(capture(client, alice, hold_id), 409, "conflict")  # once captured
    assert sql("SELECT count(*) FROM transactions WHERE captures = :h", h=hold_id) == [(1,)]
    assert ledger_problems() == []


def test_a_capture_replays_with_its_idempotency_key(client, make):
    alice, _, _, _, hold_id = held_hold(client, make, "30.00")
    first = capture(client, alice, hold_id, "5.00", key="cap-1")
    again = capture(client, alice, hold_id, "5.00", key="cap-1")
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json["id"] == first.json["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert_error(capture(client, alice, hold_id, "6.00", key="cap-1"), 422, "idempotency_key_reused")


def test_a_void_releases_at_once_and_only_a_held_hold_is_voided(client, make):
    alice, _, source, _, hold_id = held_hold(client, make, "30.00")
    response = void(client, alice, hold_id)
    assert response.status_code == 200
    assert (response.json["status"], response.json["held_amount"]) == ("voided", "0.00")
    assert account(client, alice, source)["available_balance"] == "100.00"
    assert_error(void(client, alice, hold_id), 409, "conflict")
    assert_error(capture(client, alice, hold_id), 409, "conflict")
    assert balance(source) == "100.00" and entry_count(hold_id) == 0
    assert "transaction.voided" in [
        a for (a,) in sql("SELECT action FROM audit_logs WHERE entity_id = :h", h=hold_id)
    ]
    assert ledger_problems() == []


def test_a_void_is_refused_once_a_capture_is_recorded(client, make):
    alice, _, _, _, hold_id = held_hold(client, make, "30.00")
    cap_id = accepted(capture(client, alice, hold_id))
    assert_error(void(client, alice, hold_id), 409, "conflict")
    assert apply_now(cap_id) == "completed"


def test_held_money_counts_in_every_funds_check(client, make):
    alice, bob, source, target, hold_id = held_hold(client, make, "80.00")
    too_much = accepted(transfer(client, alice, source, target, "30.00"))
    assert apply_now(too_much) == "failed"
    assert transaction(too_much).failure_code == "insufficient_funds"
    assert apply_now(accepted(debit(client, alice, source, "30.00"))) == "failed"
    other = accepted(hold(client, alice, source, target, "30.00"))
    assert apply_now(other) == "failed"
    fits = accepted(transfer(client, alice, source, target, "20.00"))
    assert apply_now(fits) == "completed"
    assert account(client, alice, source)["available_balance"] == "0.00"
    assert ledger_problems() == []


def test_a_hold_still_held_at_expires_at_expires_by_the_given_clock(client, make):
    from workers.holds import expire_due_holds

    alice, _, source, _, hold_id = held_hold(client, make, "30.00")
    expires_at = transaction(hold_id).expires_at
    assert expire_due_holds(now=expires_at - timedelta(seconds=1)) == 0
    assert get(client, alice, hold_id)["status"] == "held"
    assert expire_due_holds(now=expires_at) == 1
    expired = get(client, alice, hold_id)
    assert (expired["status"], expired["held_amount"]) == ("expired", "0.00")
    assert account(client, alice, source)["available_balance"] == "100.00"
    assert expire_due_holds(now=expires_at + timedelta(days=1)) == 0  # released once
    assert_error(capture(client, alice, hold_id), 409, "conflict")
    assert ledger_problems() == []


def test_expiry_leaves_a_hold_whose_capture_is_recorded(client, make):
    from workers.holds import expire_due_holds

    alice, _, source, target, hold_id = held_hold(client, make, "30.00")
    cap_id = accepted(capture(client, alice, hold_id))
    assert expire_due_holds(now=transaction(hold_id).expires_at + timedelta(seconds=1)) == 0
    assert apply_now(cap_id) == "completed"
    assert (balance(source), balance(target)) == ("70.00", "30.00")


def test_expires_in_seconds_is_bounded(client, make):
    alice, bob = make.user(), make.user()
    source, target = make.account(alice, balance="10.00"), make.account(bob)
    for bad in (0, 30 * 24 * 3600 + 1, "60", 1.5):
        assert_error(
            hold(client, alice, source, target, "1.00", expires_in_seconds=bad), 422, "validation_error"
        )
    response = hold(client, alice, source, target, "1.00", expires_in_seconds=60)
    created = transaction(accepted(response))
    assert created.expires_at - created.created_at == timedelta(seconds=60)


def test_only_a_held_hold_is_captured_or_voided(client, make):
    alice, bob = make.user(), make.user()
    source, target = make.account(alice, balance="10.00"), make.account(bob)
    pending = accepted(hold(client, alice, source, target, "1.00"))
    assert_error(capture(client, alice, pending), 409, "conflict")
    assert_error(void(client, alice, pending), 409, "conflict")
    plain = accepted(transfer(client, alice, source, target, "1.00"))
    assert_error(void(client, alice, plain), 409, "conflict")
    failed = accepted(hold(client, alice, source, target, "50.00"))
    assert apply_now(failed) == "failed"
    assert_error(capture(client, alice, failed), 409, "conflict")


def test_a_pending_hold_is_refused_without_taking_its_row_lock(client, make, monkeypatch):
    """While a request holds a pending hold's row, a worker's claim skips it (SKIP
    LOCKED); a refusal decides nothing, so no later wake-up would come: the refusal must
    come from the unlocked read, before any lock."""
    from db.transactions import repository as transactions_repo

    alice, bob = make.user(), make.user()
    source, target = make.account(alice, balance="10.00"), make.account(bob)
    pending = accepted(hold(client, alice, source, target, "1.00"))
    locked_while = []
    lock = transactions_repo.get_for_update

    def recording(session, tx_id):
        row = lock(session, tx_id)
        locked_while.append(row.status)
        return row

    monkeypatch.setattr(transactions_repo, "get_for_update", recording)

    assert_error(capture(client, alice, pending), 409, "conflict")
    assert_error(void(client, alice, pending), 409, "conflict")
    assert locked_while == []
    assert apply_now(pending) == "held"
    assert void(client, alice, pending).status_code == 200
    assert locked_while == ["held"]  # the recording sees the locks it should


def test_only_the_creator_finance_or_admin_capture_or_void(client, make):
    alice, bob, _, _, hold_id = held_hold(client, make, "30.00")
    stranger = make.user()
    assert_error(capture(client, stranger, hold_id), 404, "not_found")
    assert_error(void(client, stranger, hold_id), 404, "not_found")
    assert_error(capture(client, bob, hold_id), 403, "forbidden")  # the payee sees it, may not take it
    assert_error(void(client, bob, hold_id), 403, "forbidden")
    finance = make.user("finance")
    assert capture(client, finance, hold_id, "1.00").status_code == 202


def test_a_frozen_accounts_hold_is_not_captured_but_may_be_voided(client, make):
    alice, _, source, _, hold_id = held_hold(client, make, "30.00")
    finance = make.user("finance")
    assert client.post(f"{API}/accounts/{source}/freeze", headers=finance.headers).status_code == 200
    assert_error(capture(client, alice, hold_id), 422, "account_inactive")
    assert void(client, alice, hold_id).json["status"] == "voided"
    assert ledger_problems() == []


def test_a_freeze_after_the_capture_request_fails_the_capture_and_keeps_the_hold(client, make):
    alice, _, source, target, hold_id = held_hold(client, make, "30.00")
    cap_id = accepted(capture(client, alice, hold_id))
    finance = make.user("finance")
    assert client.post(f"{API}/accounts/{target}/freeze", headers=finance.headers).status_code == 200
    assert apply_now(cap_id) == "failed"
    assert transaction(cap_id).failure_code == "account_inactive"
    assert get(client, alice, hold_id)["status"] == "held"
    assert account(client, alice, source)["available_balance"] == "70.00"
    assert client.post(f"{API}/accounts/{target}/unfreeze", headers=finance.headers).status_code == 200
    again = accepted(capture(client, alice, hold_id))  # the failed capture used up nothing
    assert apply_now(again) == "completed"
    assert ledger_problems() == []


def test_an_account_holding_money_cannot_close(client, make):
    alice, bob = make.user(), make.user()
    finance = make.user("finance")
    source, target = make.account(alice), make.account(bob)
    assert set_limits(client, finance, source, overdraft_limit="50.00").status_code == 200
    hold_id = accepted(hold(client, alice, source, target, "20.00"))
    assert apply_now(hold_id) == "held"
    assert account(client, alice, source)["available_balance"] == "-20.00"
    assert_error(client.post(f"{API}/accounts/{source}/close", headers=finance.headers), 409, "conflict")
    assert void(client, alice, hold_id).status_code == 200
    assert client.post(f"{API}/accounts/{source}/close", headers=finance.headers).status_code == 200


def test_verify_catches_a_held_amount_changed_behind_the_engines_back(client, make):
    _, _, source, _, _ = held_hold(client, make, "30.00")
    sql("UPDATE balances SET held_minor = held_minor - 100 WHERE account_id = :a", a=str(source))
    problems = ledger_problems()
    assert any(p.startswith("held_matches_holds:") for p in problems), problems
