"""Coalesced wake-ups (workers/wake_ups.py): a transfer accepted while a wake-up is
queued sends no message of its own, and the queued wake-up's worker still decides it,
exactly once; a group that fails gives its rows messages of their own."""

from __future__ import annotations

import threading
import time

import psycopg
from dramatiq import Worker
from sqlalchemy import exc as sa_exc

import db.ledger.posting
from db.session import unit_of_work
from db.transactions import repository as transactions_repo
from tests.fixtures.broker import drain, flush_namespace
from tests.fixtures.http import accepted, transfer
from tests.fixtures.ledger import balance, entries_of, transaction, wait_final
from workers import broker, wake_ups
from workers.queues import queue_stats
from workers.transactions import apply_transaction, wake


def queue_a_wake_up(monkeypatch) -> None:
    """The state while a wake-up waits in the queue, unstarted: the flag is set (with a
    TTL no test outlives, so the figures do not depend on the machine's speed). Called
    after the accounts are funded: their credits are applied by the actor, which clears it."""
    monkeypatch.setattr(wake_ups, "TTL_MS", 600_000)
    assert wake_ups.claim_sending(apply_transaction)  # this test is the latest sender


def messages_waiting() -> int:
    stats = {s.name: s for s in queue_stats(broker)}
    return stats["transactions"].depth if "transactions" in stats else 0


def _small_claims(monkeypatch, size: int) -> None:
    from db.core.config import get_settings

    settings = get_settings().model_copy(update={"apply_claim_size": size})
    monkeypatch.setattr("workers.transactions.get_settings", lambda: settings)


def _connection_lost() -> sa_exc.OperationalError:
    return sa_exc.OperationalError(
        "SELECT ... FOR UPDATE", {}, psycopg.OperationalError("server closed the connection unexpectedly")
    )


def test_transfers_accepted_while_a_wake_up_is_queued_send_nothing_and_one_wake_up_decides_them(
    client, make, monkeypatch
):
    _small_claims(monkeypatch, 3)  # ten rows: the wake-up must keep claiming
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    flush_namespace()
    queue_a_wake_up(monkeypatch)

    ids = [accepted(transfer(client, alice, a, b, "4.00")) for _ in range(10)]

    assert messages_waiting() == 0  # every sender found the wake-up queued
    assert set(wait_final(ids, timeout=0).values()) == {"pending"}

    # The queued wake-up runs (its own row is the first; any row would do).
    apply_transaction.fn(transaction_id=ids[0])

    assert wait_final(ids, timeout=0) == dict.fromkeys(ids, "completed")
    assert [transaction(i).attempts for i in ids] == [1] * 10
    assert all(len(entries_of(i)) == 2 for i in ids)
    assert (balance(a), balance(b)) == ("60.00", "40.00")


def test_a_wake_up_clears_the_flag_before_claiming_so_the_next_transfer_sends_its_own(
    client, make, monkeypatch
):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    flush_namespace()
    queue_a_wake_up(monkeypatch)
    first = accepted(transfer(client, alice, a, b, "1.00"))
    assert messages_waiting() == 0

    apply_transaction.fn(transaction_id=first)
    second = accepted(transfer(client, alice, a, b, "1.00"))

    assert transaction(first).status == "completed"
    assert messages_waiting() == 1  # nothing queued any more: the second sent a wake-up
    assert transaction(second).status == "pending"


def test_a_full_claim_offers_another_wake_up_that_drains_the_rest(client, make, monkeypatch):
    """A drain that stops (its time budget spent) has offered a `transactions.wake`; that
    message, with no row of its own, decides what is left."""
    _small_claims(monkeypatch, 2)
    monkeypatch.setattr("workers.transactions.DRAIN_SECONDS", 0.0)  # one round, then hand over
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    flush_namespace()
    queue_a_wake_up(monkeypatch)
    ids = [accepted(transfer(client, alice, a, b, "1.00")) for _ in range(7)]

    apply_transaction.fn(transaction_id=ids[0])  # own + 1, then one full drain round
    decided = [i for i, s in wait_final(ids, timeout=0).items() if s == "completed"]
    assert len(decided) == 4
    assert messages_waiting() == 1  # the hand-over

    # A worker takes the hand-over; each wake-up hands over again while its claims are full.
    consumer = Worker(broker, worker_threads=1, worker_timeout=100)
    consumer.start()
    try:
        assert wait_final(ids) == dict.fromkeys(ids, "completed")
        drain(consumer)
    finally:
        consumer.stop(timeout=10_000)
    assert [transaction(i).attempts for i in ids] == [1] * 7


def test_a_failed_drain_group_gives_its_rows_messages_of_their_own(client, make, worker, monkeypatch):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    queue_a_wake_up(monkeypatch)  # nobody sends
    ids = [accepted(transfer(client, alice, a, b, "5.00")) for _ in range(3)]
    calls = []

    def flaky(session, tx_ids):
        calls.append(list(tx_ids))
        if len(calls) == 1:
            raise _connection_lost()
        return db.ledger.posting.apply_group(session, tx_ids)

    monkeypatch.setattr("workers.transactions.post_to_ledger", flaky)

    wake.fn()  # claims the three, fails, gives them back with a message each

    assert sorted(map(str, calls[0])) == sorted(ids)
    assert wait_final(ids) == dict.fromkeys(ids, "completed")
    drain(worker)
    # The failed group's attempt, then the own message's.
    assert [transaction(i).attempts for i in ids] == [2, 2, 2]
    assert all(len(entries_of(i)) == 2 for i in ids)
    assert (balance(a), balance(b)) == ("85.00", "15.00")


def test_a_failed_group_with_an_own_row_gives_the_others_messages(client, make, worker, monkeypatch):
    """The own row is decided alone by its message; the coalesced rows that the failed
    group took along have no message of their own until the failure gives them one."""
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    queue_a_wake_up(monkeypatch)
    ids = [accepted(transfer(client, alice, a, b, "5.00")) for _ in range(3)]

    def fails_in_groups(session, tx_ids):
        if len(tx_ids) > 1:
            raise _connection_lost()
        return db.ledger.posting.apply_group(session, tx_ids)

    monkeypatch.setattr("workers.transactions.post_to_ledger", fails_in_groups)

    apply_transaction.send(transaction_id=ids[0])

    assert wait_final(ids) == dict.fromkeys(ids, "completed")
    drain(worker)
    assert all(len(entries_of(i)) == 2 for i in ids)
    assert (balance(a), balance(b)) == ("85.00", "15.00")


def test_a_wake_up_whose_row_another_group_decides_first_still_claims_the_coalesced_rows(
    client, make, monkeypatch
):
    """The hold-race flake of sessions 5 and 6: the message's own row was `pending` at its
    first read, another worker's group decided it before the claim, and the rows whose
    senders had coalesced onto this message (the flag it cleared) were left with no
    wake-up at all: `pending`, 0 attempts, nothing queued."""
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    flush_namespace()
    queue_a_wake_up(monkeypatch)
    own, coalesced = (accepted(transfer(client, alice, a, b, "1.00")) for _ in range(2))
    assert messages_waiting() == 0
    read_first = transactions_repo.begin_attempt

    def then_another_group_decides_it(connection, tx_id):
        seen = read_first(connection, tx_id)
        with unit_of_work() as uow:  # another worker, between the first read and the claim
            db.ledger.posting.apply_group(uow.session, [tx_id])
        return seen

    monkeypatch.setattr(transactions_repo, "begin_attempt", then_another_group_decides_it)

    apply_transaction.fn(transaction_id=own)

    assert wait_final([own, coalesced], timeout=0) == {own: "completed", coalesced: "completed"}
    assert (balance(a), balance(b)) == ("8.00", "2.00")


def _lingering_until(monkeypatch, released) -> None:
    """The woken worker's linger lasts until the test sets `released` (not a clock)."""
    from db.core.config import get_settings

    settings = get_settings().model_copy(update={"apply_linger_ms": 20})
    monkeypatch.setattr("workers.transactions.get_settings", lambda: settings)
    monkeypatch.setattr("workers.transactions._linger", lambda _seconds: released.wait(30))


def test_a_lingering_wake_up_takes_the_transfers_accepted_meanwhile_along(client, make, monkeypatch):
    """LEDGERQ_APPLY_LINGER_MS: a woken worker waits before it clears the flag, so the
    transfers accepted meanwhile send nothing and join its group."""
    released = threading.Event()
    _lingering_until(monkeypatch, released)
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    flush_namespace()
    queue_a_wake_up(monkeypatch)
    first = accepted(transfer(client, alice, a, b, "1.00"))
    woken = threading.Thread(target=apply_transaction.fn, kwargs={"transaction_id": first})
    woken.start()
    second = accepted(transfer(client, alice, a, b, "2.00"))  # during the linger
    released.set()
    woken.join(timeout=30)

    assert messages_waiting() == 0  # the second found the wake-up still queued
    assert wait_final([first, second], timeout=0) == {first: "completed", second: "completed"}
    assert [transaction(i).attempts for i in (first, second)] == [1, 1]
    assert (balance(a), balance(b)) == ("7.00", "3.00")


def test_a_flag_that_expires_during_a_linger_loses_no_wake_up(client, make, monkeypatch):
    """The flag's TTL runs out while the woken worker lingers: the next sender sends its
    own message, the woken worker then clears the newer flag and claims its row along;
    that message finds it decided. Each transfer decided once."""
    released = threading.Event()
    _lingering_until(monkeypatch, released)
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    flush_namespace()
    monkeypatch.setattr(wake_ups, "TTL_MS", 200)
    assert wake_ups.claim_sending(apply_transaction)
    first = accepted(transfer(client, alice, a, b, "1.00"))
    woken = threading.Thread(target=apply_transaction.fn, kwargs={"transaction_id": first})
    woken.start()
    deadline = time.monotonic() + 10
    while wake_ups.queued(apply_transaction) and time.monotonic() < deadline:
        time.sleep(0.05)  # the flag expires mid-linger
    second = accepted(transfer(client, alice, a, b, "2.00"))
    assert messages_waiting() == 1  # no wake-up was queued any more: it sent its own
    released.set()
    woken.join(timeout=30)
    assert wait_final([first, second], timeout=0) == {first: "completed", second: "completed"}

    apply_transaction.fn(transaction_id=second)  # its own message, late: a no-op
    assert [transaction(i).attempts for i in (first, second)] == [1, 1]
    assert (balance(a), balance(b)) == ("7.00", "3.00")
    assert all(len(entries_of(i)) == 2 for i in (first, second))


def test_no_linger_for_a_row_decided_here_or_when_nobody_coalesces(client, make, monkeypatch):
    lingered = []
    from db.core.config import get_settings

    settings = get_settings().model_copy(update={"apply_linger_ms": 20})
    monkeypatch.setattr("workers.transactions.get_settings", lambda: settings)
    monkeypatch.setattr("workers.transactions._linger", lingered.append)
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    flush_namespace()
    one = accepted(transfer(client, alice, a, b, "1.00"))  # it set the flag and sent a message
    apply_transaction.fn(transaction_id=one)  # a wake-up senders coalesce onto: lingers
    assert lingered == [0.02]
    apply_transaction.fn(transaction_id=one)  # decided here: no wait
    flush_namespace()
    other = accepted(transfer(client, alice, a, b, "1.00"))
    flush_namespace()  # a message nobody coalesces onto (the sweeper's, say)
    apply_transaction.fn(transaction_id=other)
    assert lingered == [0.02]
    assert transaction(other).status == "completed"
