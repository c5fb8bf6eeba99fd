"""Every check of `ledgerq verify`, proven by breaking it: a copy of a sound database is
corrupted the way the review did (or the way the check exists for), and `verify` against
the copy exits 1 naming that check. The sound database (a template built once) is never
touched. A check of computed figures, which no edit of the data can break, is broken
instead by running `verify` with the regression it exists for patched in (REGRESSIONS)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy.engine import make_url

from api.cli import report_verification
from db.accounts import repository
from db.core.config import get_settings
from db.ledger.verify import CHECKS, verify_ledger
from db.ops import notifications
from db.session import get_engine, unit_of_work
from tests.api.transactions.test_holds import capture, hold
from tests.fixtures.builders import Builders, pending_movement, pending_transfer
from tests.fixtures.http import accepted
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
    # Both guards: with nothing held, the holds' CHECK (balance - held within the
    # overdraft) refuses an overdrawn balance too.
    "no_overdrawn_accounts": "ALTER TABLE balances DROP CONSTRAINT ck_balances_within_overdraft; "
    "ALTER TABLE balances DROP CONSTRAINT ck_balances_within_overdraft_when_held; "
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
    # Issue 14 (fx): one entry off by a minor unit, whatever the type.
    "entries_sum_to_zero_per_currency": RAW
    + "UPDATE ledger_entries SET amount_minor = amount_minor + 1 WHERE transaction_id = '{tx}' AND account_id = '{b}'",
    # An exchange's fee posted to the fx account instead: every sum still zero.
    "exchange_entries": RAW + "UPDATE ledger_entries SET amount_minor = amount_minor + 1 "
    "WHERE transaction_id = '{x}' AND account_id = '{fx}'; "
    "UPDATE ledger_entries SET amount_minor = amount_minor - 1 WHERE transaction_id = '{x}' AND account_id = '{fees}'",
    # An exchange whose fee is not its rate version's.
    "exchange_quotes": "UPDATE transactions SET fee_minor = fee_minor + 1, to_amount_minor = to_amount_minor "
    "WHERE id = '{x}'",
    # A rollup that drifted from the transactions it counts (issue 14, analytics).
    "analytics_rollups": "UPDATE analytics_daily SET volume_minor = volume_minor + 1",
    # Issue 14: an entry's date moved back a day, nothing else touched.
    "hash_chain": RAW + "UPDATE ledger_entries SET created_at = created_at - interval '1 day' "
    "WHERE transaction_id = '{tx}' AND account_id = '{b}'",
    # An anchor that the entries no longer reproduce (as after a rewrite of history).
    "ledger_anchor": "INSERT INTO audit_logs (action, entity_type, entity_id, data) VALUES "
    "('ledger.anchored', 'ledger', '2026-01-01', "
    '\'{{"digest": "0000", "accounts": 1, "last_entry_id": 1}}\')',
    "nothing_stuck": "UPDATE transactions SET created_at = now() - interval '3 hours', updated_at = now() "
    "WHERE id = '{pending}'",
    # Holds (db/holds/verify.py). A release of the account's reservation that left its
    # hold `held` (a void or an expiry that updated one row of the two).
    "held_matches_holds": "UPDATE balances SET held_minor = 0 WHERE account_id = '{a}'",
    # A hold decided `held` without a funds check: 130.00 reserved against 69.00, the
    # account's held amount kept in step with it (the database's CHECK would refuse it).
    "held_within_floor": "ALTER TABLE balances DROP CONSTRAINT ck_balances_within_overdraft_when_held; "
    "UPDATE transactions SET amount_minor = amount_minor + 10000, held_amount_minor = held_amount_minor "
    "+ 10000 WHERE id = '{held}'; "
    "UPDATE balances SET held_minor = held_minor + 10000 WHERE account_id = '{a}'",
    # A partial capture recorded on its hold as the hold's whole amount (the database's
    # CHECK allows it: held 0 + captured 10.00 is within the hold's 10.00).
    "hold_amounts": "UPDATE transactions SET captured_amount_minor = amount_minor WHERE id = '{captured}'",
    # The money moved by the hold itself rather than by its capture.
    "hold_entries": RAW + "UPDATE ledger_entries SET transaction_id = '{captured}' "
    "WHERE transaction_id = '{capture}'",
    # The hold re-pointed at a third account after its capture paid the original target.
    "captures_match_holds": "UPDATE transactions SET to_account_id = '{c}' WHERE id = '{captured}'",
    # A hold decided `held` whose event the outbox lacks.
    "hold_decisions_announced": "DELETE FROM events WHERE type = 'transaction.held' AND data->>'id' = '{held}'",
}

# Checks of code rather than of data, broken by running `verify` with a regression
# patched in. Available is computed (db/accounts/repository.py `figures`), never stored:
# the check recomputes it from the same stored columns, so no edit of the database can
# make the two differ; what breaks it is a `figures` that forgets a term.
REGRESSIONS = {
    # Available that forgets what is held.
    "available_balances": lambda patch: patch.setattr(
        repository.Figures, "available_minor", property(lambda f: f.balance_minor - f.pending_minor)
    ),
}


def test_every_check_has_a_corruption():
    names = {check.__name__.removeprefix("check_") for check in CHECKS}
    assert names == {case.split("/")[0] for case in CORRUPTIONS | REGRESSIONS}


@pytest.fixture(scope="module")
def sound_database(app):
    """A sound ledger (transfers, a debit, a `held` hold, a hold partly captured, one
    pending), built once for the module and kept as a template database: (its name, the
    ids the corruptions use, its fingerprint). Each case corrupts a copy of the template;
    a quiet template copies in a fraction of a second, where copying the suite's own
    database meant ending its connections and rebuilding the ledger every case."""
    client, make = app.test_client(), Builders(app)
    alice, bob, carol = make.user(), make.user(), make.user()
    a, b, c = make.account(alice, balance="100.00"), make.account(bob), make.account(carol)
    tx = pending_transfer(alice, a, b, "20.00")
    assert apply_now(tx) == "completed"
    assert apply_now(pending_movement(alice, "debit", "1.00", account_id=a)) == "completed"
    held = accepted(hold(client, alice, a, b, "30.00"))
    assert apply_now(held) == "held"
    captured = accepted(hold(client, alice, a, b, "10.00"))
    assert apply_now(captured) == "held"
    capture_id = accepted(capture(client, alice, captured, "4.00"))
    assert apply_now(capture_id) == "completed"
    pending = pending_transfer(alice, a, b, "1.00")
    x, fx, fees = _an_exchange(make, alice, a)
    ids = {
        "a": a,
        "b": b,
        "c": c,
        "tx": tx,
        "held": held,
        "captured": captured,
        "capture": capture_id,
        "pending": pending,
        "x": x,
        "fx": fx,
        "fees": fees,
    }
    template = f"{make_url(get_settings().database_url).database}_verify_sound_{uuid.uuid4().hex[:8]}"
    # CREATE DATABASE ... TEMPLATE needs the source idle: no pool, and no LISTEN
    # connection (the app's notification listener, once an earlier test started it; it
    # is started again on first use). Anything else still connected is ended.
    get_engine().dispose()
    notifications.stop_all()
    _copy(make_url(get_settings().database_url).database, template, terminate=True)
    try:
        yield template, ids, fingerprint(_url_of(template))
    finally:
        _drop(template)


def _an_exchange(make, alice, source):
    """A completed USD -> EUR exchange with a fee: (its id, the USD fx and fees accounts)."""
    from db.fx.service import set_rate
    from db.session import unit_of_work

    make.account(alice, currency="EUR")
    target = make.account(alice, currency="EUR")
    with unit_of_work() as uow:
        set_rate(
            uow.session,
            make.user("finance").principal,
            "USD",
            "EUR",
            rate="0.9",
            fee_bps=100,
            request_id=None,
        )
    x = pending_movement(alice, "exchange", "10.00", from_account_id=source, to_account_id=target)
    assert apply_now(x) == "completed"
    fx, fees = (
        sql("SELECT id FROM accounts WHERE currency = 'USD' AND system_role = :r", r=role)[0][0]
        for role in ("fx", "fees")
    )
    return x, fx, fees


def _url_of(database: str) -> str:
    return make_url(get_settings().database_url).set(database=database).render_as_string(hide_password=False)


def _admin() -> str:
    return make_url(_url_of("postgres")).set(drivername="postgresql").render_as_string(hide_password=False)


def _copy(source: str, copy: str, terminate: bool = False) -> None:
    with psycopg.connect(_admin(), autocommit=True) as connection:
        for attempt in range(20):
            if terminate:
                connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (source,)
                )
            try:
                connection.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{source}"')
                return
            except psycopg.errors.ObjectInUse:
                if attempt == 19:
                    raise
                time.sleep(0.25)


def _drop(database: str) -> None:
    with psycopg.connect(_admin(), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def fingerprint(database_url: str) -> list:
    """Every row of every table, and every trigger and constraint with its state: what a
    corruption that went to the wrong database would change."""
    with psycopg.connect(database_url.replace("+psycopg", "")) as connection:
        tables = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        ).fetchall()
        rows = [
            connection.execute(
                f"SELECT {table!r}, count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM \"{table}\" t"
            ).fetchone()
            for (table,) in tables
        ]
        guards = connection.execute(
            "SELECT string_agg(t, ',' ORDER BY t) FROM (SELECT concat(tgrelid::regclass, '.', tgname, '=', "
            "tgenabled) AS t FROM pg_trigger WHERE NOT tgisinternal) guards"
        ).fetchone()
        constraints = connection.execute(
            "SELECT string_agg(c, ',' ORDER BY c) FROM (SELECT concat(conrelid::regclass, '.', conname) AS c "
            "FROM pg_constraint WHERE connamespace = 'public'::regnamespace) checks"
        ).fetchone()
    return [*rows, guards, constraints]


@contextmanager
def database_copy(template: str):
    """A copy of the sound template: its SQLAlchemy URL, dropped afterwards."""
    copy = f"{template}_{uuid.uuid4().hex[:8]}"
    _copy(template, copy)
    try:
        yield _url_of(copy)
    finally:
        _drop(copy)


def verify(database_url: str) -> subprocess.CompletedProcess:
    """`ledgerq verify`, the real command in its own process, against `database_url`."""
    return subprocess.run(
        [LEDGERQ, "verify"],
        env={**os.environ, "DATABASE_URL": database_url, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def verify_here(database_url: str, capsys) -> tuple[int, str]:
    """The body of `ledgerq verify` (api/cli verify) run in this process against
    `database_url`: (its exit code, what it wrote to stderr). A process per case cost a
    Python start and the app's imports; the command's own exit code is proven by
    test_the_copy_of_the_sound_database_verifies and tests/api/cli/test_verify.py."""
    settings = get_settings().model_copy(update={"database_url": database_url})
    capsys.readouterr()
    try:
        with unit_of_work(settings) as uow:
            report_verification(verify_ledger(uow.session))
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        get_engine(settings).dispose()  # nothing left connected to the copy
    return code, capsys.readouterr().err


def test_the_copy_of_the_sound_database_verifies(sound_database):
    template, _, _ = sound_database
    with database_copy(template) as copy:
        sound = verify(copy)
    assert sound.returncode == 0 and "ledger OK" in sound.stdout, sound.stderr


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_verify_exits_1_naming_the_broken_check(sound_database, case, capsys):
    template, ids, original = sound_database
    with database_copy(template) as copy:
        with psycopg.connect(copy.replace("+psycopg", ""), autocommit=True) as connection:
            for statement in CORRUPTIONS[case].format(**ids).split("; "):
                connection.execute(statement)
        code, report = verify_here(copy, capsys)
    check = case.split("/")[0]
    assert code == 1, report
    assert f"  - {check}: " in report, report
    assert fingerprint(_url_of(template)) == original, "the original is untouched"


@pytest.mark.parametrize("case", sorted(REGRESSIONS))
def test_verify_exits_1_naming_the_check_a_regression_breaks(sound_database, case, capsys, monkeypatch):
    template, _, _ = sound_database
    with database_copy(template) as copy:
        with monkeypatch.context() as patched:
            REGRESSIONS[case](patched)
            broken, report = verify_here(copy, capsys)
        sound, sound_report = verify_here(copy, capsys)
    assert broken == 1, report
    assert f"  - {case}: " in report, report
    assert sound == 0, ("the data itself is sound", sound_report)
