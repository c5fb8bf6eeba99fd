"""Webhooks end to end: API -> outbox -> feed -> fan-out -> real Redis broker -> real
worker -> a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json

from ledgerq.webhooks import verify_signature
from tests.fixtures.http import accepted, transfer
from tests.fixtures.ledger import wait_final
from tests.fixtures.scheduling import wait_until
from tests.fixtures.webhooks import deliveries, dispatching, receiver, subscribe


def _completed(rx, tx_id):
    return [
        r
        for r in rx.received
        if r.event["type"] == "transaction.completed" and r.event["data"]["id"] == tx_id
    ]


def test_a_transfers_completion_arrives_signed_and_the_signature_verifies(client, make, worker):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="50.00"), make.account(bob)
    with receiver() as rx, dispatching():
        hook = subscribe(client, alice, rx.url, events=["transaction.completed"])
        assert hook["secret"].startswith("whsec_")
        tx_id = accepted(transfer(client, alice, a, b, "12.34"))
        assert wait_final([tx_id]) == {tx_id: "completed"}
        assert wait_until(lambda: _completed(rx, tx_id), timeout=20)

    (request,) = _completed(rx, tx_id)
    assert verify_signature(hook["secret"], request.headers["Ledgerq-Signature"], request.body)
    assert not verify_signature("whsec_wrong", request.headers["Ledgerq-Signature"], request.body)
    assert not verify_signature(hook["secret"], request.headers["Ledgerq-Signature"], request.body + b" ")
    event = json.loads(request.body)
    assert request.headers["Ledgerq-Event-Id"] == event["id"]
    assert request.headers["Ledgerq-Event-Type"] == "transaction.completed"
    assert event["data"]["status"] == "completed" and event["data"]["amount"] == "12.34"
    # Only the subscribed type arrived (no transaction.created).
    assert {r.event["type"] for r in rx.received} == {"transaction.completed"}
    (row,) = [d for d in deliveries(client, alice, hook["id"]) if d["event_id"] == event["id"]]
    assert row["status"] == "delivered" and row["attempts"] == 1
    assert row["last_status_code"] == 200 and row["last_latency_ms"] is not None


def test_a_receiver_that_fails_the_first_attempt_gets_a_retry_with_the_same_event_id(client, make, worker):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="50.00"), make.account(bob)
    with receiver() as rx, dispatching():
        rx.statuses = [500]
        hook = subscribe(client, alice, rx.url, events=["transaction.completed"])
        tx_id = accepted(transfer(client, alice, a, b, "1.00"))
        assert wait_until(lambda: len(_completed(rx, tx_id)) >= 2, timeout=30)

    first, second = _completed(rx, tx_id)[:2]
    assert first.headers["Ledgerq-Event-Id"] == second.headers["Ledgerq-Event-Id"]
    assert first.event == second.event
    assert verify_signature(hook["secret"], second.headers["Ledgerq-Signature"], second.body)
    (row,) = deliveries(client, alice, hook["id"])
    assert row["status"] == "delivered" and row["attempts"] == 2 and row["last_status_code"] == 200


def test_a_receiver_down_for_a_while_gets_everything_once_it_is_back(client, make, worker):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    with receiver() as rx, dispatching():
        subscribe(client, alice, rx.url, events=["transaction.completed"])
        rx.stop()  # nothing listens on its port now
        tx_ids = [accepted(transfer(client, alice, a, b, "1.00")) for _ in range(6)]
        assert set(wait_final(tx_ids).values()) == {"completed"}
        # Attempts fail meanwhile (connection refused) and the circuit opens.
        assert wait_until(lambda: _attempted_and_failed(client, alice), timeout=20)
        rx.start()
        assert wait_until(lambda: set(tx_ids) <= {e["data"]["id"] for e in rx.events()}, timeout=40)

    got = [e["data"]["id"] for e in rx.events()]
    assert set(got) == set(tx_ids)  # each event at least once, nothing else


def _attempted_and_failed(client, user) -> bool:
    hooks = client.get("/api/v1/webhooks", headers=user.headers).json["items"]
    rows = deliveries(client, user, hooks[0]["id"])
    return any(
        r["attempts"] >= 1 and r["status"] in ("pending", "delivering") and r["last_error"] for r in rows
    )
