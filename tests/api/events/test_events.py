"""GET /events: what each change announces, the data as the API renders the resource,
who sees which events, and the cursor."""

from __future__ import annotations

from tests.fixtures.batches import csv_bytes, upload, wait_batch
from tests.fixtures.builders import pending_transfer
from tests.fixtures.http import API, accepted, assert_error, transfer
from tests.fixtures.ledger import apply_now, wait_final


def _feed(client, user, query: str = "") -> tuple[list[dict], str]:
    items, cursor = [], None
    while True:
        after = f"&after={cursor}" if cursor else ""
        response = client.get(f"{API}/events?limit=200{query}{after}", headers=user.headers)
        assert response.status_code == 200, response.json
        items += response.json["items"]
        if not response.json["items"]:
            return items, response.json["next_cursor"]
        cursor = response.json["next_cursor"]


def _one(events: list[dict], type_: str, resource_id) -> dict:
    (event,) = [e for e in events if e["type"] == type_ and e["data"]["id"] == str(resource_id)]
    return event


def test_a_transfer_announces_created_then_completed_with_the_data_a_get_shows(client, make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    tx_id = accepted(transfer(client, alice, a, b, "2.50", reference="rent"))
    assert apply_now(tx_id) == "completed"

    events, _ = _feed(client, alice)
    created, completed = (
        _one(events, "transaction.created", tx_id),
        _one(events, "transaction.completed", tx_id),
    )
    assert events.index(created) < events.index(completed)
    assert created["data"]["status"] == "pending"
    shown = client.get(f"{API}/transactions/{tx_id}", headers=alice.headers).json
    assert completed["data"] == shown  # field for field, as the API renders it
    assert set(completed) == {"id", "type", "created_at", "data"}


def test_failed_cancelled_and_reversed_are_announced(client, make):
    alice, bob, finance = make.user(), make.user(), make.user("finance")
    a, b = make.account(alice, balance="5.00"), make.account(bob)
    too_much = accepted(transfer(client, alice, a, b, "9.00"))
    assert apply_now(too_much) == "failed"
    cancelled = accepted(transfer(client, alice, a, b, "1.00"))
    assert client.post(f"{API}/transactions/{cancelled}/cancel", headers=alice.headers).status_code == 200
    paid = accepted(transfer(client, alice, a, b, "2.00"))
    assert apply_now(paid) == "completed"
    reversal = client.post(f"{API}/transactions/{paid}/reverse", headers=finance.headers)
    assert reversal.status_code == 202, reversal.json
    assert apply_now(reversal.json["id"]) == "completed"

    events, _ = _feed(client, finance)
    assert _one(events, "transaction.failed", too_much)["data"]["failure_code"] == "insufficient_funds"
    assert _one(events, "transaction.cancelled", cancelled)["data"]["status"] == "cancelled"
    reversed_ = _one(events, "transaction.reversed", paid)
    assert reversed_["data"]["reversed_by"] == reversal.json["id"]
    assert _one(events, "transaction.completed", reversal.json["id"])["data"]["reverses"] == paid
    assert reversed_["data"] == client.get(f"{API}/transactions/{paid}", headers=finance.headers).json


def test_a_refused_change_leaves_no_event(client, make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="5.00"), make.account(bob)
    tx_id = accepted(transfer(client, alice, a, b, "1.00"))
    assert apply_now(tx_id) == "completed"
    before, _ = _feed(client, alice)
    assert_error(client.post(f"{API}/transactions/{tx_id}/cancel", headers=alice.headers), 409, "conflict")
    assert_error(transfer(client, alice, a, b, "1.001"), 422, "validation_error")
    after, _ = _feed(client, alice)
    assert after == before


def test_account_states_are_announced_with_the_account_as_rendered(client, make):
    alice, finance = make.user(), make.user("finance")
    account = make.account(alice)
    for action in ("freeze", "unfreeze", "close"):
        response = client.post(f"{API}/accounts/{account}/{action}", json={}, headers=finance.headers)
        assert response.status_code == 200, response.json
    events, _ = _feed(client, alice, "&type=account.closed")
    assert [e["type"] for e in events] == ["account.closed"]
    assert events[0]["data"] == client.get(f"{API}/accounts/{account}", headers=alice.headers).json
    everything, _ = _feed(client, alice)
    assert [e["type"] for e in everything if e["type"].startswith("account.")] == [
        "account.frozen",
        "account.unfrozen",
        "account.closed",
    ]


def test_a_finished_batch_is_announced_to_finance_only(client, make, worker):
    alice, bob, finance = make.user(), make.user(), make.user("finance")
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    response = upload(client, finance, csv_bytes(f"{a},{b},1.00,USD,r1", f"{a},{b},2.00,USD,r2"))
    assert response.status_code == 202, response.json
    batch = wait_batch(client, finance, response.json["id"])
    assert batch["status"] == "completed"

    events, _ = _feed(client, finance)
    assert _one(events, "batch.completed", batch["id"])["data"] == batch
    lines = [
        e for e in events if e["type"] == "transaction.completed" and e["data"]["batch_id"] == batch["id"]
    ]
    assert len(lines) == 2
    assert (
        len(
            [e for e in events if e["type"] == "transaction.created" and e["data"]["batch_id"] == batch["id"]]
        )
        == 2
    )
    customer_view, _ = _feed(client, alice)
    assert not [e for e in customer_view if e["type"].startswith("batch.")]
    assert len([e for e in customer_view if e["type"] == "transaction.completed"]) == 3  # funding + 2 lines


def test_customers_see_only_their_own_accounts_events(client, make):
    alice, bob, carol, finance = make.user(), make.user(), make.user(), make.user("finance")
    a, b, c = make.account(alice, balance="10.00"), make.account(bob), make.account(carol, balance="10.00")
    ab = pending_transfer(alice, a, b, "1.00")
    cb = pending_transfer(carol, c, b, "1.00")
    assert {apply_now(ab), apply_now(cb)} == {"completed"}

    def ids(user):
        return {e["data"]["id"] for e in _feed(client, user)[0] if e["type"].startswith("transaction.")}

    assert ab in ids(alice) and cb not in ids(alice)
    assert cb in ids(carol) and ab not in ids(carol)
    assert {ab, cb} <= ids(bob)  # the recipient's account is touched by both
    assert {ab, cb} <= ids(finance)


def test_the_cursor_is_always_returned_and_a_bad_one_is_a_422(client, make):
    user = make.user()
    response = client.get(f"{API}/events", headers=user.headers)
    assert response.status_code == 200
    assert response.json["items"] == [] and response.json["next_cursor"]
    again = client.get(f"{API}/events?after={response.json['next_cursor']}", headers=user.headers)
    assert again.json["next_cursor"] == response.json["next_cursor"]
    assert_error(
        client.get(f"{API}/events?after=not-a-cursor", headers=user.headers), 422, "validation_error"
    )
    assert_error(
        client.get(f"{API}/events?type=money.printed", headers=user.headers), 422, "validation_error"
    )
    assert_error(client.get(f"{API}/events"), 401, "unauthorized")


def test_a_dead_lettered_transaction_is_announced(client, make):
    from workers.transactions import record_dead_letter

    alice, bob, finance = make.user(), make.user(), make.user("finance")
    a, b = make.account(alice, balance="5.00"), make.account(bob)
    tx_id = pending_transfer(alice, a, b, "1.00")
    record_dead_letter({"transaction_id": tx_id}, "database unreachable")
    assert wait_final([tx_id]) == {tx_id: "dead_lettered"}
    events, _ = _feed(client, finance)
    assert _one(events, "transaction.dead_lettered", tx_id)["data"]["status"] == "dead_lettered"
