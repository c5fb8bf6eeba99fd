"""Many transfers submitted at once through the API and applied by the real worker:
balance sufficiency is decided atomically, and crossing transfers never deadlock."""

from __future__ import annotations

from collections import Counter

from tests.fixtures.http import concurrently, transfer
from tests.fixtures.ledger import balance, ledger_problems, transaction, wait_final


def test_fifty_concurrent_transfers_overdraw_nothing_exactly_ten_complete(app, client, make, worker):
    alice, bob = make.user(), make.user()
    source = make.account(alice, balance="100.00")
    target = make.account(bob)

    responses = concurrently(app, 50, lambda c, _: transfer(c, alice, source, target, "10.00"))

    refused = [r.json for r in responses if r.status_code != 202]
    assert refused == []
    ids = [r.json["id"] for r in responses]
    assert len(set(ids)) == 50
    statuses = wait_final(ids)
    assert Counter(statuses.values()) == {"completed": 10, "failed": 40}
    failures = {transaction(i).failure_code for i, s in statuses.items() if s == "failed"}
    assert failures == {"insufficient_funds"}
    assert balance(source) == "0.00"
    assert balance(target) == "100.00"
    account = client.get(f"/api/v1/accounts/{source}", headers=alice.headers).json
    assert (account["balance"], account["available_balance"]) == ("0.00", "0.00")
    assert ledger_problems() == []


def test_crossing_transfers_never_deadlock_and_conserve_money(app, make, worker):
    alice, bob = make.user(), make.user()
    a = make.account(alice, balance="100.00")
    b = make.account(bob, balance="100.00")
    amounts = ["7.00", "13.00", "25.00", "3.50", "40.00"]

    def cross(c, i):
        amount = amounts[i % len(amounts)]
        if i % 2:
            return transfer(c, alice, a, b, amount)
        return transfer(c, bob, b, a, amount)

    responses = concurrently(app, 60, cross)

    refused = [r.json for r in responses if r.status_code != 202]
    assert refused == []
    ids = [r.json["id"] for r in responses]
    statuses = wait_final(ids)
    assert set(statuses.values()) <= {"completed", "failed"}, Counter(statuses.values())
    rows = [transaction(i) for i in ids]
    assert {tx.failure_code for tx in rows if tx.status == "failed"} <= {"insufficient_funds"}
    # A deadlock (or any other transient error) would have cost a retry.
    assert [(tx.attempts, tx.last_error) for tx in rows] == [(1, None)] * 60
    assert sum(int(balance(x).replace(".", "")) for x in (a, b)) == 200_00
    assert ledger_problems() == []
