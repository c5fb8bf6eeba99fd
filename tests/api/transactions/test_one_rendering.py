"""GET /transactions/{id} renders its answer with db.events.render (the events' renderer)
while the history pages dump TransactionSchema: for every type and status, and for each
kind of viewer (creator, counterparty, staff), the two must give the same JSON, or a
client polling one transaction and one reading its history would see it differently."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.api.transactions.test_holds import capture, hold, void
from tests.fixtures.fx import exchange, set_rate
from tests.fixtures.http import accepted, all_pages, credit, debit, transfer
from tests.fixtures.ledger import apply_now

API = "/api/v1"


def _every_kind(client, make):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    usd, eur = make.account(alice, balance="100.00"), make.account(alice, currency="EUR")
    bobs = make.account(bob)
    ids = {}
    ids["completed"] = accepted(
        transfer(client, alice, usd, bobs, "2.50", reference="rent", metadata={"k": [1]})
    )
    ids["failed"] = accepted(transfer(client, alice, usd, bobs, "900.00", reference="too much"))
    ids["cancelled"] = accepted(transfer(client, alice, usd, bobs, "1.00"))
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    ids["scheduled"] = accepted(transfer(client, alice, usd, bobs, "1.00", scheduled_for=later))
    ids["pending"] = accepted(transfer(client, alice, usd, bobs, "1.00"))
    ids["credit"] = accepted(credit(client, finance, bobs, "3.00"))
    ids["debit"] = accepted(debit(client, alice, usd, "0.10"))
    ids["held"] = accepted(hold(client, alice, usd, bobs, "5.00"))
    ids["captured"] = accepted(hold(client, alice, usd, bobs, "6.00"))
    ids["voided"] = accepted(hold(client, alice, usd, bobs, "7.00"))
    assert set_rate(client, finance, "USD", "EUR", "0.9200", 10).status_code == 200
    ids["exchange"] = accepted(exchange(client, alice, usd, eur, "10.00", "USD"))
    for name in ("completed", "failed", "credit", "debit", "exchange"):
        apply_now(ids[name])
    for name in ("held", "captured", "voided"):
        assert apply_now(ids[name]) == "held"
    assert (
        client.post(f"{API}/transactions/{ids['cancelled']}/cancel", headers=alice.headers).status_code == 200
    )
    ids["capture"] = accepted(capture(client, alice, ids["captured"], "4.00"))
    apply_now(ids["capture"])
    assert void(client, alice, ids["voided"]).status_code == 200
    for name in ("completed", "exchange"):
        response = client.post(f"{API}/transactions/{ids[name]}/reverse", headers=finance.headers)
        ids[f"reversal of {name}"] = accepted(response)
        apply_now(ids[f"reversal of {name}"])
    return {"alice": alice, "bob (counterparty)": bob, "finance": finance}, ids


def test_one_transaction_renders_the_same_by_id_as_in_the_history_for_every_kind_and_viewer(client, make):
    viewers, ids = _every_kind(client, make)
    seen_reduced = seen_reversed = 0
    for viewer_name, viewer in viewers.items():
        history = {
            item["id"]: item
            for item in all_pages(client, viewer, f"{API}/transactions/history", "limit=100")[0]
        }
        for kind, tx_id in ids.items():
            response = client.get(f"{API}/transactions/{tx_id}", headers=viewer.headers)
            if tx_id not in history:
                assert response.status_code == 404, (viewer_name, kind)
                continue
            assert response.status_code == 200, (viewer_name, kind, response.json)
            assert response.json == history[tx_id], (viewer_name, kind)
            assert response.content_type == "application/json"
            seen_reduced += response.json["reference"] is None and kind == "completed"
            seen_reversed += response.json["reversed_by"] is not None
    # The comparison covered what differs between views: bob's reduced one, the reversals.
    assert seen_reduced == 1 and seen_reversed == 3 + 2  # alice, bob, finance; alice, finance
