"""Deciding before locking (db.ledger.posting.engine.post_deciding_first), against real
PostgreSQL: a worker group's statuses, events and audit rows are written from a guess
against the accounts as last committed, then the accounts are locked and every item
decided again. What commits must be exactly what the lock-first `post` writes: when
the money moved between the guess and the lock, the guess is rolled back (its events,
audit rows and analytics shares with it) and the group decided under the locks."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY

from db.ledger import repository as ledger_repo
from db.ledger.posting import apply_group, engine
from db.session import unit_of_work
from db.transactions import repository as transactions_repo
from tests.fixtures.builders import bulk_pending, pending_movement
from tests.fixtures.ledger import audit_log, balance, entries_of, ledger_problems, sql


@pytest.fixture
def accounts(make):
    alice, bob, carol = make.user(), make.user(), make.user()
    return alice, make.account(alice, balance="10.00"), make.account(bob), make.account(carol)


def _group(tx_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    with unit_of_work() as uow:
        outcomes = apply_group(uow.session, [uuid.UUID(t) for t in tx_ids])
    return {str(o.transaction_id): (o.status, o.failure_code) for o in outcomes}


def _spy_on_post(monkeypatch) -> list[int]:
    """How many times the lock-first `post` ran (the fallback of a missed guess)."""
    calls: list[int] = []
    real = engine.post

    def spy(session, items, **kwargs):
        calls.append(len(items))
        return real(session, items, **kwargs)

    monkeypatch.setattr(engine, "post", spy)
    return calls


_POST_LOCK_FIRST = engine.post


def _interlope(tx_id: str) -> None:
    """Post `tx_id` lock-first in a transaction of its own, as another worker would. Not
    deciding first: its early write would take its own shard row, fine in production,
    but here the test's group waits for it inside its own transaction."""
    with unit_of_work() as uow:
        rows = transactions_repo.lock_for_posting(uow.session, [uuid.UUID(tx_id)])
        (decided,) = _POST_LOCK_FIRST(uow.session, rows)
    assert decided.decision.status == "completed"


def _interlope_before_the_lock(monkeypatch, tx_id: str) -> dict[str, bool]:
    """The next posting's account lock waits until `tx_id` is posted (`_interlope`): what
    another worker does between a group's guess and its lock."""
    real_lock = ledger_repo.lock_accounts
    state = {"interloped": False}

    def lock_after_another_posting(session, account_ids):
        if not state["interloped"]:
            state["interloped"] = True
            _interlope(tx_id)
        return real_lock(session, account_ids)

    monkeypatch.setattr(ledger_repo, "lock_accounts", lock_after_another_posting)
    return state


def _guesses(outcome: str) -> float:
    return REGISTRY.get_sample_value("ledgerq_posting_guesses_total", {"outcome": outcome}) or 0.0


def _events_of(tx_id: str) -> list[str]:
    return [r[0] for r in sql("SELECT type FROM events WHERE data->>'id' = :id ORDER BY seq", id=tx_id)]


def _decisions_by_shard() -> dict[int, tuple[int, int]]:
    rows = sql("SELECT shard, sum(completed_count), sum(failed_count) FROM analytics_daily GROUP BY shard")
    return {shard: (int(completed), int(failed)) for shard, completed, failed in rows}


def _counted_since(before: dict[int, tuple[int, int]]) -> dict[int, tuple[int, int]]:
    """(completed, failed) added to each shard since `before`."""
    after = _decisions_by_shard()
    added = {s: (c - before.get(s, (0, 0))[0], f - before.get(s, (0, 0))[1]) for s, (c, f) in after.items()}
    return {s: figures for s, figures in added.items() if figures != (0, 0)}


def test_a_guess_that_holds_is_what_commits_and_its_analytics_use_the_unlocked_shards(accounts, monkeypatch):
    alice, a, b, _ = accounts
    ids = bulk_pending(alice, a, b, 3, amount_minor=400)  # 10.00 covers two of 4.00
    fallbacks = _spy_on_post(monkeypatch)
    before, kept = _decisions_by_shard(), _guesses("kept")

    outcomes = _group(ids)

    assert fallbacks == []  # decided from the guess, checked under the lock
    assert _guesses("kept") == kept + 1
    assert outcomes == {
        ids[0]: ("completed", None),
        ids[1]: ("completed", None),
        ids[2]: ("failed", "insufficient_funds"),
    }
    assert (balance(a), balance(b)) == ("2.00", "8.00")
    assert [len(entries_of(t)) for t in ids] == [2, 2, 0]
    assert [_events_of(t) for t in ids] == [["transaction.completed"]] * 2 + [["transaction.failed"]]
    assert [[r.action for r in audit_log(t)] for t in ids] == [["transaction.completed"]] * 2 + [
        ["transaction.failed"]
    ]
    # Written before the accounts were locked: the backend's own shard, 16 up (migration 0019).
    counted = _counted_since(before)
    assert list(counted.values()) == [(2, 1)] and min(counted) >= 16
    assert ledger_problems() == []


def test_money_moved_between_the_guess_and_the_lock_is_decided_under_the_lock(accounts, monkeypatch):
    """The guess sees 10.00 and completes both; by the time the group locks, another
    posting took 5.00. Trusting the guess would overdraw the account (5.00 - 8.00 - 1.00);
    the group is decided again under the lock: 8.00 fails, 1.00 completes, and nothing
    of the guess (its statuses, events, audit rows, analytics) survives."""
    alice, a, b, c = accounts
    group = bulk_pending(alice, a, b, 1, amount_minor=800) + bulk_pending(alice, a, b, 1, amount_minor=100)
    interloper = bulk_pending(alice, a, c, 1, amount_minor=500)[0]
    state = _interlope_before_the_lock(monkeypatch, interloper)
    fallbacks = _spy_on_post(monkeypatch)
    before, missed = _decisions_by_shard(), _guesses("missed")

    outcomes = _group(group)

    assert state["interloped"] and fallbacks == [2]
    assert _guesses("missed") == missed + 1
    assert outcomes == {group[0]: ("failed", "insufficient_funds"), group[1]: ("completed", None)}
    assert (balance(a), balance(b), balance(c)) == ("4.00", "1.00", "5.00")
    assert [len(entries_of(t)) for t in group] == [0, 2]
    assert [_events_of(t) for t in group] == [["transaction.failed"], ["transaction.completed"]]
    assert [[r.action for r in audit_log(t)] for t in group] == [
        ["transaction.failed"],
        ["transaction.completed"],
    ]
    # The interloper and the completed 1.00 counted once each, the failed 8.00 once; the
    # guess's two completions were rolled back with it.
    assert sum(c for c, _ in _counted_since(before).values()) == 2
    assert sum(f for _, f in _counted_since(before).values()) == 1
    assert ledger_problems() == []


def test_balances_moved_between_the_guess_and_the_lock_with_the_same_decisions_post_from_the_locked_ones(
    accounts, monkeypatch
):
    """The guess completes both 4.00 against 10.00; by the lock another posting took 1.00
    and chained an entry onto the account. The decisions stand, so the guess is kept, but
    the entries' balance_after and hash chain must follow the locked balance (9.00 -> 5.00
    -> 1.00), not the guessed one (10.00 -> 6.00 -> 2.00)."""
    alice, a, b, c = accounts
    group = bulk_pending(alice, a, b, 2, amount_minor=400)
    interloper = bulk_pending(alice, a, c, 1, amount_minor=100)[0]
    state = _interlope_before_the_lock(monkeypatch, interloper)
    fallbacks = _spy_on_post(monkeypatch)

    outcomes = _group(group)

    assert state["interloped"] and fallbacks == []
    assert list(outcomes.values()) == [("completed", None)] * 2
    assert (balance(a), balance(b), balance(c)) == ("1.00", "8.00", "1.00")
    afters = sql("SELECT balance_after_minor FROM ledger_entries WHERE account_id = :a ORDER BY id", a=str(a))
    assert [r[0] for r in afters][-3:] == [900, 500, 100]
    assert ledger_problems() == []  # running balances and the hash chain, account by account


def test_a_frozen_account_between_the_guess_and_the_lock_fails_the_item(accounts, monkeypatch):
    alice, a, b, _ = accounts
    ids = bulk_pending(alice, a, b, 2, amount_minor=100)
    real_lock = ledger_repo.lock_accounts

    def freeze_then_lock(session, account_ids):
        sql("UPDATE accounts SET status = 'frozen' WHERE id = :id", id=str(b))  # committed apart
        return real_lock(session, account_ids)

    monkeypatch.setattr(ledger_repo, "lock_accounts", freeze_then_lock)
    fallbacks = _spy_on_post(monkeypatch)

    outcomes = _group(ids)

    assert fallbacks == [2]
    assert outcomes == {t: ("failed", "account_inactive") for t in ids}
    assert (balance(a), balance(b)) == ("10.00", "0.00")
    assert [_events_of(t) for t in ids] == [["transaction.failed"]] * 2


def test_holds_and_exchanges_are_decided_under_the_lock_as_before(accounts, monkeypatch):
    """Their decisions read and write more than two balances' figures (reservations,
    rates): `decides_first` sends any group with one of them to `post`."""
    alice, a, b, _ = accounts
    hold = pending_movement(alice, "hold", "1.00", from_account_id=a, to_account_id=b)
    transfer = bulk_pending(alice, a, b, 1, amount_minor=100)[0]
    fallbacks = _spy_on_post(monkeypatch)
    before = _decisions_by_shard()

    outcomes = _group([hold, transfer])

    assert fallbacks == [2]
    assert outcomes == {hold: ("held", None), transfer: ("completed", None)}
    counted = _counted_since(before)
    assert list(counted.values()) == [(1, 0)] and max(counted) < 16  # written under the locks


def test_a_limited_source_counts_the_groups_own_items_once(accounts, monkeypatch):
    """Under the lock the limits' usage is read with the group's own statuses already
    written `completed`: counted there and again as the items are decided, every guess
    of a limited account would miss. The daily limit 5.00 admits two of 2.00."""
    alice, a, b, _ = accounts
    sql("UPDATE accounts SET daily_outgoing_limit_minor = 500 WHERE id = :id", id=str(a))
    ids = bulk_pending(alice, a, b, 3, amount_minor=200)
    fallbacks = _spy_on_post(monkeypatch)

    outcomes = _group(ids)

    assert fallbacks == []
    assert list(outcomes.values()) == [("completed", None)] * 2 + [("failed", "limit_exceeded")]
    assert (balance(a), balance(b)) == ("6.00", "4.00")


def test_a_limit_used_up_between_the_guess_and_the_lock_is_decided_under_the_lock(accounts, monkeypatch):
    alice, a, b, c = accounts
    sql("UPDATE accounts SET daily_outgoing_limit_minor = 500 WHERE id = :id", id=str(a))
    group = bulk_pending(alice, a, b, 1, amount_minor=200) + bulk_pending(alice, a, b, 1, amount_minor=100)
    interloper = bulk_pending(alice, a, c, 1, amount_minor=300)[0]
    state = _interlope_before_the_lock(monkeypatch, interloper)
    fallbacks = _spy_on_post(monkeypatch)

    outcomes = _group(group)

    # 3.00 + 2.00 is exactly the limit (allowed); the 1.00 after it is not.
    assert state["interloped"] and fallbacks == [2]
    assert outcomes == {group[0]: ("completed", None), group[1]: ("failed", "limit_exceeded")}
    assert (balance(a), balance(b), balance(c)) == ("5.00", "2.00", "3.00")


def _event_data(tx_id: str) -> list[tuple[str, dict]]:
    """Each event of `tx_id` with the fields that differ between two twins left out."""
    rows = sql("SELECT type, data FROM events WHERE data->>'id' = :id ORDER BY seq", id=tx_id)
    varying = {
        "id",
        "from_account_id",
        "to_account_id",
        "created_at",
        "updated_at",
        "completed_at",
        "reverses",
    }
    return [(kind, {k: v for k, v in data.items() if k not in varying}) for kind, data in rows]


def _twin_group(make, alice, finance, a, b) -> list[str]:
    """A transfer, a credit, a debit and a reversal of an earlier transfer, pending."""
    from db.session import unit_of_work as uow_
    from db.transactions.service import reverse

    earlier = pending_movement(alice, "transfer", "1.00", from_account_id=a, to_account_id=b)
    assert _group([earlier]) == {earlier: ("completed", None)}
    with uow_() as uow:
        reversal = str(
            reverse(uow.session, finance.principal, uuid.UUID(earlier), idempotency_key=None).record.id
        )
    return [
        pending_movement(alice, "transfer", "2.00", from_account_id=a, to_account_id=b),
        pending_movement(finance, "credit", "3.00", account_id=a),
        pending_movement(finance, "debit", "0.50", account_id=a),
        reversal,
        pending_movement(alice, "transfer", "99.00", from_account_id=a, to_account_id=b),  # fails
    ]


def test_the_guess_writes_the_events_and_audit_rows_lock_first_posting_writes(make, monkeypatch):
    """Twin groups, one decided first and one lock-first: the same outcomes, the same
    event data (but the fields that name each twin's own rows) and audit rows."""
    finance = make.user("finance")
    twins = []
    for lock_first in (False, True):
        alice, bob = make.user(), make.user()
        a, b = make.account(alice, balance="10.00"), make.account(bob)
        ids = _twin_group(make, alice, finance, a, b)
        with monkeypatch.context() as patch:
            if lock_first:
                patch.setattr(engine, "decides_first", lambda items: False)
            fallbacks = _spy_on_post(patch)
            outcomes = _group(ids)
        assert fallbacks == ([5] if lock_first else [])
        twins.append(
            (
                list(outcomes.values()),
                [_event_data(t) for t in ids],
                [
                    [
                        (r.action, {k: v for k, v in r.data.items() if k != "reverses"})
                        for r in audit_log(t)
                        if r.action.startswith("transaction.")
                    ]
                    for t in ids
                ],
                (balance(a), balance(b)),
            )
        )
    guessed, locked = twins
    assert guessed == locked
    assert guessed[0] == [("completed", None)] * 4 + [("failed", "insufficient_funds")]
    assert [events[-1][0] for events in guessed[1]] == ["transaction.completed"] * 4 + ["transaction.failed"]
    assert ledger_problems() == []
