"""The `transactions.apply` actor: redelivery is harmless, transient errors are retried,
permanent ones and exhausted retries end `dead_lettered` with no money moved."""

from __future__ import annotations

import threading
from collections import defaultdict

import psycopg
import pytest
from sqlalchemy import exc as sa_exc

import db.ledger.posting
from tests.fixtures.broker import dead_lettered_transaction_ids, drain
from tests.fixtures.builders import pending_transfer
from tests.fixtures.http import transfer
from tests.fixtures.ledger import balance, entries_of, transaction, wait_final
from workers import broker
from workers.transactions import apply_transaction


def _connection_lost() -> sa_exc.OperationalError:
    return sa_exc.OperationalError(
        "SELECT ... FOR UPDATE", {}, psycopg.OperationalError("server closed the connection unexpectedly")
    )


@pytest.fixture
def posting_outcomes(monkeypatch):
    """Spy on the ledger posting the actor calls (it still runs for real): the outcome
    of every application, in order, per transaction (funding credits are applied too)."""
    outcomes: dict[str, list[str]] = defaultdict(list)
    lock = threading.Lock()

    def spy(session, tx_ids):
        group = db.ledger.posting.apply_group(session, tx_ids)
        with lock:
            for outcome in group:
                outcomes[str(outcome.transaction_id)].append(outcome.status)
        return group

    monkeypatch.setattr("workers.transactions.post_to_ledger", spy)
    return outcomes


def _funded_pair(make):
    alice, bob = make.user(), make.user()
    return alice, make.account(alice, balance="100.00"), make.account(bob)


def test_actor_applied_twice_for_one_message_moves_money_once(make, posting_outcomes):
    alice, a, b = _funded_pair(make)
    tx_id = pending_transfer(alice, a, b, "25.00")

    apply_transaction.fn(transaction_id=tx_id)
    apply_transaction.fn(transaction_id=tx_id)

    # The second delivery finds the row decided with one read: the posting is not even called.
    assert posting_outcomes[tx_id] == ["completed"]
    assert transaction(tx_id).status == "completed"
    assert (balance(a), balance(b)) == ("75.00", "25.00")
    assert sorted(amount for _, amount in entries_of(tx_id)) == [-2500, 2500]
    assert transaction(tx_id).attempts == 1  # the no-op redelivery is not an attempt


def test_same_message_delivered_twice_by_the_broker_moves_money_once(make, worker, posting_outcomes):
    alice, a, b = _funded_pair(make)
    tx_id = pending_transfer(alice, a, b, "25.00")
    message = apply_transaction.message(transaction_id=tx_id)

    broker.enqueue(message)
    broker.enqueue(message)  # the same Dramatiq message id, delivered twice
    apply_transaction.send(transaction_id=tx_id)  # and a duplicate (a sweeper re-enqueue)
    drain(worker)

    # Once completed; a duplicate either finds it decided with one read or waits for the
    # row lock and finds it decided then (a noop of the posting).
    assert posting_outcomes[tx_id].count("completed") == 1
    assert set(posting_outcomes[tx_id]) <= {"completed", "noop"}
    assert transaction(tx_id).status == "completed"
    assert (balance(a), balance(b)) == ("75.00", "25.00")
    assert len(entries_of(tx_id)) == 2


def test_transient_error_is_retried_and_the_transfer_completes(client, make, worker, monkeypatch):
    alice, a, b = _funded_pair(make)
    calls = []

    def flaky(session, tx_ids):
        calls.append(tx_ids)
        if len(calls) == 1:
            raise _connection_lost()
        return db.ledger.posting.apply_group(session, tx_ids)

    monkeypatch.setattr("workers.transactions.post_to_ledger", flaky)

    tx_id = transfer(client, alice, a, b, "30.00").json["id"]

    assert wait_final([tx_id]) == {tx_id: "completed"}
    assert transaction(tx_id).attempts == 2
    assert (balance(a), balance(b)) == ("70.00", "30.00")
    assert len(entries_of(tx_id)) == 2
    drain(worker)
    assert dead_lettered_transaction_ids() == []


@pytest.mark.parametrize(
    "error",
    [db.ledger.posting.LedgerCorrupted("account has no balance row"), ValueError("a bug")],
    ids=["ledger_corrupted", "value_error"],
)
def test_permanent_error_dead_letters_at_once_and_moves_no_money(client, make, worker, monkeypatch, error):
    alice, a, b = _funded_pair(make)

    def broken(session, tx_ids):
        raise error

    monkeypatch.setattr("workers.transactions.post_to_ledger", broken)

    tx_id = transfer(client, alice, a, b, "30.00").json["id"]

    assert wait_final([tx_id]) == {tx_id: "dead_lettered"}
    tx = transaction(tx_id)
    assert tx.attempts == 1  # not retried: it would fail the same way again
    assert type(error).__name__ in tx.last_error
    assert entries_of(tx_id) == []
    assert (balance(a), balance(b)) == ("100.00", "0.00")
    drain(worker)
    assert dead_lettered_transaction_ids() == [tx_id]
    shown = client.get(f"/api/v1/transactions/{tx_id}", headers=alice.headers).json
    assert (shown["status"], shown["failure_code"]) == ("dead_lettered", None)


def test_transient_errors_that_never_stop_dead_letter_after_max_retries(client, make, worker, monkeypatch):
    from db.core.config import get_settings

    alice, a, b = _funded_pair(make)

    def down(session, tx_ids):
        raise _connection_lost()

    monkeypatch.setattr("workers.transactions.post_to_ledger", down)

    tx_id = transfer(client, alice, a, b, "30.00").json["id"]

    assert wait_final([tx_id]) == {tx_id: "dead_lettered"}
    tx = transaction(tx_id)
    assert tx.attempts == 1 + get_settings().worker_max_retries == 4
    assert "OperationalError" in tx.last_error
    assert entries_of(tx_id) == []
    assert (balance(a), balance(b)) == ("100.00", "0.00")
    drain(worker)
    assert dead_lettered_transaction_ids() == [tx_id]


def test_two_workers_claiming_concurrently_never_apply_a_row_twice(make, monkeypatch):
    """Two workers (threads with their own connections: real PostgreSQL concurrency) take
    every message of a 120-transfer backlog, each message delivered twice, in opposite
    orders. Groups of up to 7 overlap in what they try to claim; every row is still
    decided by exactly one posting, and the money adds up."""
    from db.core.config import get_settings
    from db.ledger.verify import verify_ledger
    from db.session import unit_of_work
    from tests.fixtures.builders import bulk_pending
    from tests.fixtures.ledger import sql

    settings = get_settings().model_copy(update={"apply_claim_size": 7})
    monkeypatch.setattr("workers.transactions.get_settings", lambda: settings)
    alice, a, b = _funded_pair(make)
    ids = bulk_pending(alice, a, b, 120, amount_minor=100)  # 100.00 covers 100 of 1.00

    decided_by: dict[str, list[str]] = defaultdict(list)
    lock = threading.Lock()

    def spy(session, tx_ids):
        group = db.ledger.posting.apply_group(session, tx_ids)
        with lock:
            for outcome in group:
                if outcome.status in ("completed", "failed"):
                    decided_by[str(outcome.transaction_id)].append(threading.current_thread().name)
        return group

    monkeypatch.setattr("workers.transactions.post_to_ledger", spy)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(messages: list[str]) -> None:
        start.wait()
        try:
            for tx_id in messages:
                apply_transaction.fn(transaction_id=tx_id)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(ids + ids,), name="one"),
        threading.Thread(target=worker, args=(list(reversed(ids)) * 2,), name="two"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert sorted(decided_by) == sorted(ids)
    assert all(len(deciders) == 1 for deciders in decided_by.values()), "a row was decided twice"
    assert {name for deciders in decided_by.values() for name in deciders} == {"one", "two"}
    statuses = dict(
        sql("SELECT status, count(*) FROM transactions WHERE id = ANY(:ids) GROUP BY status", ids=ids)
    )
    assert statuses == {"completed": 100, "failed": 20}
    entries = dict(
        sql(
            "SELECT transaction_id::text, count(*) FROM ledger_entries WHERE transaction_id = ANY(:ids) "
            "GROUP BY transaction_id",
            ids=ids,
        )
    )
    assert len(entries) == 100 and set(entries.values()) == {2}
    assert (balance(a), balance(b)) == ("0.00", "100.00")
    with unit_of_work() as uow:
        assert verify_ledger(uow.session) == []
