"""`ledgerq verify` (db.ledger.verify.verify_ledger) and the database's own guards: the
invariants hold after real traffic, corruption is reported, history cannot be edited."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.orm import Session

from db.session import get_engine
from tests.fixtures.builders import pending_movement, pending_transfer
from tests.fixtures.ledger import apply_now, balance, entries_of, forge_entry, ledger_problems, sql


@pytest.fixture
def traffic(make):
    """A realistic day: credits in two currencies, transfers both ways, one refused for
    funds, a debit out, one still pending."""
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob, balance="20.00")
    a_eur, b_eur = make.account(alice, "EUR", balance="5.00"), make.account(bob, "EUR")
    outcomes = [
        apply_now(pending_transfer(alice, a, b, "30.00")),
        apply_now(pending_transfer(bob, b, a, "50.00")),
        apply_now(pending_transfer(bob, b, a, "0.01")),  # b has 0.00 left
        apply_now(pending_transfer(alice, a_eur, b_eur, "5.00", "EUR")),
        apply_now(pending_movement(bob, "debit", "2.50", "EUR", account_id=b_eur)),
    ]
    assert outcomes == ["completed", "completed", "failed", "completed", "completed"]
    pending_transfer(alice, a, b, "1.00")
    assert (balance(a), balance(b), balance(a_eur), balance(b_eur)) == ("120.00", "0.00", "0.00", "2.50")
    return a, b


def test_ledger_verifies_clean_after_real_traffic(traffic):
    assert ledger_problems() == []


def test_corrupted_balance_row_is_reported(traffic):
    a, _ = traffic
    sql("UPDATE balances SET balance_minor = balance_minor + 1 WHERE account_id = :id", id=str(a))

    problems = ledger_problems()

    assert "currency_sums: currency USD: balances sum to 0.01, not 0" in problems
    assert f"balances_match_entries: account {a}: balance 120.01 but entries sum to 120.00" in problems
    assert len(problems) == 2


def test_money_moved_by_a_transaction_that_did_not_complete_is_reported(traffic):
    a, b = traffic
    failed = sql("SELECT id FROM transactions WHERE status = 'failed'")[0][0]
    assert entries_of(failed) == []
    # Entries slipped in for the failed transfer, with balances and hash chains kept in
    # step: only the per-transaction invariant can notice.
    forge_entry(failed, a, -1, 11999)
    forge_entry(failed, b, 1, 1)
    sql("UPDATE balances SET balance_minor = balance_minor - 1 WHERE account_id = :id", id=str(a))
    sql("UPDATE balances SET balance_minor = balance_minor + 1 WHERE account_id = :id", id=str(b))

    assert ledger_problems() == [
        f"entries_per_transaction: transaction {failed} (failed): 2 entries summing to 0"
    ]


def test_a_pending_transaction_nobody_applied_for_an_hour_is_reported(traffic):
    """Judged by when it became due, not `updated_at`: the sweeper keeps touching a
    transfer it cannot get applied, which hid a 3-hour-old one."""
    sql(
        "UPDATE transactions SET created_at = now() - interval '3 hours', updated_at = now() "
        "WHERE status = 'pending'"
    )
    problems = ledger_problems()
    assert len(problems) == 1 and problems[0].startswith("nothing_stuck: 1 pending transaction(s) due"), (
        problems
    )


def test_a_scheduled_transfer_released_just_now_is_not_stuck(traffic):
    sql(
        "UPDATE transactions SET created_at = now() - interval '3 days', "
        "scheduled_for = now() - interval '1 minute' WHERE status = 'pending'"
    )
    assert ledger_problems() == []


def test_missing_append_only_trigger_is_reported():
    with get_engine().connect() as connection:
        connection.begin()
        connection.execute(text("DROP TRIGGER ledger_entries_append_only ON ledger_entries"))
        from db.ledger.verify import verify_ledger

        problems = verify_ledger(Session(bind=connection))
        connection.rollback()  # DDL is transactional: the trigger is back
    assert problems == [
        "append_only_triggers: trigger ledger_entries_append_only is missing: ledger_entries can be changed"
    ]
    assert ledger_problems() == []


APPEND_ONLY_VIOLATIONS = [
    "UPDATE ledger_entries SET amount_minor = amount_minor * 2",
    "DELETE FROM ledger_entries",
    "UPDATE audit_logs SET action = 'nothing.happened'",
    "DELETE FROM audit_logs",
    "TRUNCATE ledger_entries CASCADE",
    "TRUNCATE audit_logs",
]


def test_ledger_entries_and_audit_logs_cannot_be_changed(traffic):
    counts = "SELECT (SELECT count(*) FROM ledger_entries), (SELECT count(*) FROM audit_logs)"
    before = sql(counts)
    assert before[0][0] > 0 and before[0][1] > 0

    for statement in APPEND_ONLY_VIOLATIONS:
        with pytest.raises(sa_exc.DBAPIError, match="append-only"):
            sql(statement)

    assert sql(counts) == before
    assert ledger_problems() == []
