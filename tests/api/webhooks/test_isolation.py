"""One dead endpoint costs the others nothing; customers only ever receive their own."""

from __future__ import annotations

import time

from db.models import WebhookSubscription
from db.session import unit_of_work
from tests.fixtures.http import accepted, transfer
from tests.fixtures.ledger import wait_final
from tests.fixtures.scheduling import wait_until
from tests.fixtures.webhooks import dispatching, receiver, subscribe


def _circuit(webhook_id: str) -> str:
    with unit_of_work() as uow:
        sub = uow.session.get(WebhookSubscription, webhook_id)
        assert sub is not None
        return sub.circuit_state


def test_a_dead_endpoint_trips_its_breaker_without_delaying_another_endpoint(client, make, worker):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    finance = make.user("finance")
    with receiver() as healthy, receiver() as hanging, dispatching():
        # Answers only after the 2 s timeout (tests/conftest.py): every attempt fails slowly,
        # holding a worker thread each time; at most WEBHOOK_MAX_IN_FLIGHT (2) at once.
        hanging.delay = 3.0
        dead = subscribe(client, finance, hanging.url, events=["transaction.completed"])
        subscribe(client, alice, healthy.url, events=["transaction.completed"])
        tx_ids = [accepted(transfer(client, alice, a, b, "1.00")) for _ in range(8)]
        assert set(wait_final(tx_ids).values()) == {"completed"}
        assert wait_until(lambda: set(tx_ids) <= {e["data"]["id"] for e in healthy.events()}, timeout=20)
        assert wait_until(lambda: _circuit(dead["id"]) in ("open", "half_open"), timeout=30)

    # Every healthy delivery arrived while the dead endpoint's first attempts were still
    # hanging (they end at the 2 s timeout): none of them waited for a dead attempt.
    first_dead_attempt = min(r.at for r in hanging.received)
    assert max(r.at for r in healthy.received) < first_dead_attempt + 2.0
    rows = client.get(f"/api/v1/webhooks/{dead['id']}/deliveries", headers=finance.headers).json["items"]
    assert rows and all(r["status"] != "delivered" for r in rows)
    assert any("timed out" in (r["last_error"] or "") for r in rows)
    # Open: most deliveries were not even attempted (the breaker held them back).
    assert sum(r["attempts"] for r in rows) < 3 * len(rows)


def test_customers_receive_only_their_own_accounts_events_and_finance_all(client, make, worker):
    alice, bob, carol = make.user(), make.user(), make.user()
    a, b, c = make.account(alice, balance="20.00"), make.account(bob), make.account(carol, balance="20.00")
    finance = make.user("finance")
    with receiver() as rx_carol, receiver() as rx_bob, receiver() as rx_finance, dispatching():
        subscribe(client, carol, rx_carol.url)
        subscribe(client, bob, rx_bob.url, events=["transaction.completed"])
        subscribe(client, finance, rx_finance.url, events=["transaction.completed"])
        tx_ab = accepted(transfer(client, alice, a, b, "5.00"))
        tx_cb = accepted(transfer(client, carol, c, b, "7.00"))
        assert wait_final([tx_ab, tx_cb]) == {tx_ab: "completed", tx_cb: "completed"}
        assert wait_until(
            lambda: {tx_ab, tx_cb} <= {e["data"]["id"] for e in rx_finance.events()}, timeout=20
        )
        assert wait_until(lambda: {tx_ab, tx_cb} <= {e["data"]["id"] for e in rx_bob.events()}, timeout=20)
        assert wait_until(lambda: tx_cb in {e["data"]["id"] for e in rx_carol.events()}, timeout=20)
        time.sleep(1.0)  # give a wrong delivery time to arrive

    assert tx_ab not in {
        e["data"]["id"] for e in rx_carol.events()
    }  # alice -> bob is none of carol's business
    assert {e["type"] for e in rx_carol.events()} == {"transaction.created", "transaction.completed"}
    accounts_seen = {e["data"]["from_account_id"] for e in rx_carol.events()} | {
        e["data"]["to_account_id"] for e in rx_carol.events()
    }
    assert str(a) not in accounts_seen
