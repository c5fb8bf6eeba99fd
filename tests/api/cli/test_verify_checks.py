"""Every check of `ledgerq verify`, proven by breaking it: a copy of a sound database is
corrupted the way the review did (or the way the check exists for), and `ledgerq verify`
against the copy exits 1 naming that check. The suite's own database is never touched."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy.engine import make_url

from db.core.config import get_settings
from db.ledger.verify import CHECKS
from db.ops import notifications
from db.session import get_engine
from tests.fixtures.builders import pending_movement, pending_transfer
from tests.fixtures.ledger import apply_now, sql
from tests.fixtures.processes import LEDGERQ

pytestmark = pytest.mark.slow

# Writes that only a superuser session with triggers off can make.
RAW = "SET session_replication_role = replica; "

CORRUPTIONS = {
    "currency_sums": "UPDATE balances SET balance_minor = balance_minor + 1 WHERE account_id = '{b}'",
    "balances_match_entries": "UPDATE balances SET balance_minor = balance_minor + 1 WHERE account_id = '{b}'",
    "running_balances": RAW + "UPDATE ledger_entries SET balance_after_minor = balance_after_minor + 5 "
    "WHERE transaction_id = '{tx}' AND account_id = '{b}'",
    "entries_per_transaction": RAW
    + "DELETE FROM ledger_entries WHERE transaction_id = '{tx}' AND account_id = '{b}'",
    # The review: a transfer posted with its signs swapped, balances kept in step.
    "entries_follow_transactions": RAW
    + "UPDATE ledger_entries SET amount_minor = -amount_minor, balance_after_minor = balance_after_minor "
    "- 2 * amount_minor WHERE transaction_id = '{tx}'; "
    "UPDATE balances SET balance_minor = balance_minor + 2000 WHERE account_id = '{a}'; "
    "UPDATE balances SET balance_minor = balance_minor - 2000 WHERE account_id = '{b}'",
    # The review: credited to a third account instead of the recipient.
    "entries_follow_transactions/third_account": RAW
    + "UPDATE ledger_entries SET account_id = '{c}' WHERE transaction_id = '{tx}' AND account_id = '{b}'",
    # The review: a user account with allow_negative debited to -500.00.
    "allow_negative_only_on_system_accounts": "UPDATE balances SET allow_negative = true, "
    "balance_minor = balance_minor - 50000 WHERE account_id = '{c}'; "
    "UPDATE balances SET balance_minor = balance_minor + 50000 WHERE account_id = '{a}'",
    "no_overdrawn_accounts": "ALTER TABLE balances DROP CONSTRAINT ck_balances_within_overdraft; "
    "UPDATE balances SET balance_minor = balance_minor - 50000 WHERE account_id = '{c}'; "
    "UPDATE balances SET balance_minor = balance_minor + 50000 WHERE account_id = '{a}'",
    # The review: the trigger disabled, then an entry updated.
    "append_only_triggers": "ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only; "
    "UPDATE ledger_entries SET amount_minor = amount_minor WHERE transaction_id = '{tx}'",
    # The review: TRUNCATE audit_logs, which row triggers never saw.
    "append_only_triggers/truncate": "DROP TRIGGER audit_logs_no_truncate ON audit_logs; TRUNCATE audit_logs",
    # The review: pending for 3 h while the sweeper keeps "touching" it.
    # A decided transaction whose event the outbox lacks (issue 13: none may be missing).
    "final_transactions_announced": "DELETE FROM events WHERE type = 'transaction.completed' "
    "AND data->>'id' = '{tx}'",
    # Issue 14: an entry's date moved back a day, nothing else touched.
    "hash_chain": RAW + "UPDATE ledger_entries SET created_at = created_at - interval '1 day' "
    "WHERE transaction_id = '{tx}' AND account_id = '{b}'",
    # An anchor that the entries no longer reproduce (as after a rewrite of history).
    "ledger_anchor": "INSERT INTO audit_logs (action, entity_type, entity_id, data) VALUES "
    "('ledger.anchored', 'ledger', '2026-01-01', "
    '\'{{"digest": "0000", "accounts": 1, "last_entry_id": 1}}\')',
    "nothing_stuck": "UPDATE transactions SET created_at = now() - interval '3 hours', updated_at = now() "
    "WHERE id = '{pending}'",
}


def test_every_check_has_a_corruption():
    names = {check.__name__.removeprefix("check_") for check in CHECKS}
    assert names == {case.split("/")[0] for case in CORRUPTIONS}


@pytest.fixture
def sound_database(make):
    """A sound ledger (transfers, a debit, one pending) and the ids the corruptions use."""
    alice, bob, carol = make.user(), make.user(), make.user()
    a, b, c = make.account(alice, balance="100.00"), make.account(bob), make.account(carol)
    tx = pending_transfer(alice, a, b, "20.00")
    assert apply_now(tx) == "completed"
    assert apply_now(pending_movement(alice, "debit", "1.00", account_id=a)) == "completed"
    pending = pending_transfer(alice, a, b, "1.00")
    return {"a": a, "b": b, "c": c, "tx": tx, "pending": pending}


@contextmanager
def database_copy():
    url = make_url(get_settings().database_url)
    copy = f"{url.database}_verify_{uuid.uuid4().hex[:8]}"
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    # CREATE DATABASE ... TEMPLATE needs the source idle: no pool, and no LISTEN
    # connection (the app's notification listener, once an earlier test started it; it
    # is started again on first use). Anything else still connected is ended.
    get_engine().dispose()
    notifications.stop_all()
    with psycopg.connect(admin, autocommit=True) as connection:
        for attempt in range(20):
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (url.database,),
            )
            try:
                connection.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{url.database}"')
                break
            except psycopg.errors.ObjectInUse:
                if attempt == 19:
                    raise
                time.sleep(0.25)
    try:
        yield url.set(database=copy).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')


def verify(database_url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LEDGERQ, "verify"],
        env={**os.environ, "DATABASE_URL": database_url, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_copy_of_the_sound_database_verifies(sound_database):
    with database_copy() as copy:
        sound = verify(copy)
    assert sound.returncode == 0 and "ledger OK" in sound.stdout, sound.stderr


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_verify_exits_1_naming_the_broken_check(sound_database, case):
    entries = sql("SELECT count(*), sum(amount_minor * id) FROM ledger_entries")
    with database_copy() as copy:
        with psycopg.connect(copy.replace("+psycopg", ""), autocommit=True) as connection:
            for statement in CORRUPTIONS[case].format(**sound_database).split("; "):
                connection.execute(statement)
        broken = verify(copy)
    check = case.split("/")[0]
    assert broken.returncode == 1, (broken.stdout, broken.stderr)
    assert f"  - {check}: " in broken.stderr, broken.stderr
    assert sql("SELECT count(*), sum(amount_minor * id) FROM ledger_entries") == entries, (
        "the original is untouched"
    )
