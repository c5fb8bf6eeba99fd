"""The full path: API -> real Redis broker -> real worker -> double-entry ledger."""

from __future__ import annotations

from tests.fixtures.http import transfer
from tests.fixtures.ledger import balance, wait_final


def test_transfer_completes_through_real_broker_and_worker(client, make, worker):
    alice, bob = make.user(), make.user()
    a = make.account(alice, balance="100.00")
    b = make.account(bob)

    response = transfer(client, alice, a, b, "30.25")
    assert response.status_code == 202, response.json
    tx = response.json
    assert tx["status"] == "pending"
    assert response.headers["Location"] == f"/api/v1/transactions/{tx['id']}"

    polled = client.get(f"/api/v1/transactions/{tx['id']}?wait=10", headers=alice.headers)
    assert polled.status_code == 200
    assert polled.json["status"] == "completed"
    assert polled.json["completed_at"] is not None
    assert balance(a) == "69.75"
    assert balance(b) == "30.25"

    entries_a = client.get(f"/api/v1/accounts/{a}/entries", headers=alice.headers).json["items"]
    entries_b = client.get(f"/api/v1/accounts/{b}/entries", headers=bob.headers).json["items"]
    transfer_entries = [e for e in entries_a + entries_b if e["transaction_id"] == tx["id"]]
    assert sorted(e["amount"] for e in transfer_entries) == ["-30.25", "30.25"]
    assert {e["balance_after"] for e in transfer_entries} == {"69.75", "30.25"}
    assert wait_final([tx["id"]]) == {tx["id"]: "completed"}
