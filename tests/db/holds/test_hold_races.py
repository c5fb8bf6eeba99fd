"""Holds under concurrency, on the real PostgreSQL with the real worker: the held amount
on the balance row is kept under the account lock, so concurrent holds, transfers, batch
lines, captures and voids never overspend and never both win."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.api.transactions.test_holds import capture, hold, void
from tests.fixtures.batches import csv_bytes, upload, wait_batch
from tests.fixtures.http import accepted, concurrently
from tests.fixtures.ledger import balance, ledger_problems, sql, transaction, wait_final


def _queue_state(tx_ids) -> dict:
    """What a stuck row's wake-up looks like: its attempts, the coalescing flag, the
    queue's Redis keys and their sizes."""
    from dramatiq import get_broker

    from workers import wake_ups

    client = get_broker().client
    keys = {k.decode(): client.type(k).decode() for k in client.scan_iter(match=f"{get_broker().namespace}*")}
    return {
        "attempts": dict(sql("SELECT id::text, attempts FROM transactions WHERE id = ANY(:ids)", ids=tx_ids)),
        "wake_flag_ttl_ms": client.pttl(wake_ups._key()),
        "queues": {
            k: client.llen(k) if t == "list" else client.hlen(k) if t == "hash" else t
            for k, t in keys.items()
        },
    }


def _available(client, user, account_id) -> str:
    return client.get(f"/api/v1/accounts/{account_id}", headers=user.headers).json["available_balance"]


def test_fifty_concurrent_holds_exactly_as_many_are_held_as_fit(app, client, make, worker):
    alice, bob = make.user(), make.user()
    source = make.account(alice, balance="100.00")
    target = make.account(bob)

    responses = concurrently(app, 50, lambda c, _: hold(c, alice, source, target, "10.00"))

    assert [r.status_code for r in responses] == [202] * 50
    statuses = wait_final([r.json["id"] for r in responses])
    assert Counter(statuses.values()) == {"held": 10, "failed": 40}
    assert {transaction(i).failure_code for i, s in statuses.items() if s == "failed"} == {
        "insufficient_funds"
    }
    assert balance(source) == "100.00"
    assert _available(client, alice, source) == "0.00"
    assert sql("SELECT held_minor FROM balances WHERE account_id = :a", a=str(source)) == [(100_00,)]
    assert ledger_problems() == []


def test_capture_racing_void_exactly_one_wins(app, client, make, worker):
    alice, bob = make.user(), make.user()
    source = make.account(alice, balance="100.00")
    target = make.account(bob)
    holds = [accepted(hold(client, alice, source, target, "5.00")) for _ in range(10)]
    finals = wait_final(holds)
    # Seen twice on CI (sessions 5 and 6): some holds still pending after 20 s. Say why,
    # in full: an assertion's message is cut to 240 characters without -vv.
    if set(finals.values()) != {"held"}:
        pytest.fail(f"holds not all held: {finals!r}; {_queue_state(holds)!r}", pytrace=False)

    outcomes = []
    for hold_id in holds:
        cap, voided = concurrently(
            app, 2, lambda c, i, h=hold_id: capture(c, alice, h) if i == 0 else void(c, alice, h)
        )
        outcomes.append((cap.status_code, voided.status_code))
        assert (cap.status_code, voided.status_code) in {(202, 409), (409, 200)}, (cap.json, voided.json)
        if cap.status_code == 202:
            assert wait_final([cap.json["id"]]) == {cap.json["id"]: "completed"}
    finals = wait_final(holds)
    captured = sum(1 for cap, _ in outcomes if cap == 202)
    assert Counter(finals.values()) == {
        status: n for status, n in (("captured", captured), ("voided", 10 - captured)) if n
    }
    assert (balance(source), balance(target)) == (f"{100 - 5 * captured}.00", f"{5 * captured}.00")
    assert _available(client, alice, source) == balance(source)
    assert ledger_problems() == []


def test_a_hold_against_an_account_a_batch_is_draining(app, client, make, worker):
    finance = make.user("finance")
    alice, bob = make.user(), make.user()
    source = make.account(alice, balance="100.00")
    target = make.account(bob)
    lines = [f"{source},{target},0.50,USD,line-{n}" for n in range(200)]

    def race(c, i):
        if i == 0:
            return upload(c, finance, csv_bytes(*lines))
        return hold(c, alice, source, target, "50.00")

    batch_response, hold_response = concurrently(app, 2, race)
    assert batch_response.status_code == 202, batch_response.json
    hold_id = accepted(hold_response)
    batch = wait_batch(client, finance, batch_response.json["id"])
    hold_status = wait_final([hold_id])[hold_id]

    completed = batch["counts"]["completed"]
    # Either the hold came first or mid-way (50.00 reserved, the lines drain the other
    # 50.00) or after the money was gone (it fails, every line completes).
    assert (hold_status, completed) in {("held", 100), ("failed", 200)}, (hold_status, batch["counts"])
    assert balance(source) == f"{100 - completed // 2}.00"
    assert _available(client, alice, source) == "0.00"
    assert ledger_problems() == []
