"""The ledger posting (db.ledger.posting), called directly against real PostgreSQL: the one
code that moves money. A completed transfer writes two entries and two balances; each
business rule fails it with its code, in the documented order, and writes nothing; a
second application is a no-op; a missing row is reported; missing balance rows raise
LedgerCorrupted so the worker dead-letters instead of retrying."""

from __future__ import annotations

import uuid

import pytest

from db.ledger import limits as limits_rules
from db.ledger.posting import LedgerCorrupted, Outcome, apply_group, apply_transaction, decide
from db.ledger.posting.rules import BIGINT_MAX, BIGINT_MIN
from db.models import Account, Balance, Transaction
from db.session import unit_of_work
from tests.fixtures.builders import bulk_pending, pending_movement, pending_transfer
from tests.fixtures.ledger import audit_log, balance, entries_of, entry_count, sql, transaction


def post(tx_id) -> Outcome:
    """One call of the posting in its own unit of work (committed, as the worker does)."""
    with unit_of_work() as uow:
        return apply_transaction(uow.session, uuid.UUID(str(tx_id)))


@pytest.fixture
def pair(make):
    alice, bob = make.user(), make.user()
    return alice, make.account(alice, balance="100.00"), make.account(bob, balance="5.00")


def test_a_completed_transfer_writes_two_entries_two_balances_and_the_audit_row(pair):
    alice, a, b = pair
    tx_id = pending_transfer(alice, a, b, "30.25")

    outcome = post(tx_id)

    assert outcome == Outcome(uuid.UUID(tx_id), "completed", None, None)
    assert (balance(a), balance(b)) == ("69.75", "35.25")
    assert sorted(entries_of(tx_id)) == sorted([(str(a), -3025), (str(b), 3025)])
    after = dict(
        sql("SELECT account_id, balance_after_minor FROM ledger_entries WHERE transaction_id = :id", id=tx_id)
    )
    assert after == {a: 6975, b: 3525}
    row = transaction(tx_id)
    assert row.status == "completed" and row.completed_at is not None
    assert (row.failure_code, row.failure_message) == (None, None)
    assert [(r.action, r.data) for r in audit_log(tx_id)][-1] == ("transaction.completed", {})


def test_the_failure_codes_come_in_order_and_each_failure_moves_nothing(pair):
    """inactive account, then currency mismatch, then limit exceeded, then insufficient
    funds: with every rule broken, lifting one rule at a time reveals the next code."""
    alice, a, b = pair
    # Recorded straight into the table: the worker must decide on its own, whatever the
    # request-time checks would have refused. 150.00 in EUR between two USD accounts.
    ids = bulk_pending(alice, a, b, 4, amount_minor=15000, currency="EUR")
    sql("UPDATE accounts SET status = 'frozen', max_per_transaction_minor = 1000 WHERE id = :id", id=str(a))

    def lift(statement: str) -> None:
        sql(statement, id=str(a))

    lifts = [
        ("account_inactive", "UPDATE accounts SET status = 'active' WHERE id = :id"),
        (
            "currency_mismatch",
            "UPDATE transactions SET currency = 'USD' WHERE from_account_id = :id AND status = 'pending'",
        ),
        ("limit_exceeded", "UPDATE accounts SET max_per_transaction_minor = NULL WHERE id = :id"),
        ("insufficient_funds", "SELECT 1"),
    ]
    for tx_id, (code, statement) in zip(ids, lifts, strict=True):
        entries_before = entry_count()
        outcome = post(tx_id)
        assert (outcome.status, outcome.failure_code) == ("failed", code)
        row = transaction(tx_id)
        assert (row.status, row.failure_code) == ("failed", code)
        assert row.failure_message and row.completed_at is None
        assert audit_log(tx_id)[-1].action == "transaction.failed"
        assert audit_log(tx_id)[-1].data == {"failure_code": code}
        assert entry_count() == entries_before and entries_of(tx_id) == []
        assert (balance(a), balance(b)) == ("100.00", "5.00")
        lift(statement)


def test_a_second_application_is_a_no_op(pair):
    alice, a, b = pair
    tx_id = pending_transfer(alice, a, b, "10.00")
    assert post(tx_id).status == "completed"
    audited = len(audit_log(tx_id))

    again = post(tx_id)

    assert again == Outcome(uuid.UUID(tx_id), "noop")
    assert (balance(a), balance(b)) == ("90.00", "15.00")
    assert len(entries_of(tx_id)) == 2
    assert len(audit_log(tx_id)) == audited


def test_a_decided_or_cancelled_row_is_never_decided_again(pair):
    alice, a, b = pair
    failed = pending_transfer(alice, a, b, "10.00")
    sql("UPDATE accounts SET status = 'frozen' WHERE id = :id", id=str(b))
    assert post(failed).failure_code == "account_inactive"
    sql("UPDATE accounts SET status = 'active' WHERE id = :id", id=str(b))
    assert post(failed).status == "noop"  # the frozen account is active again: still failed
    assert transaction(failed).status == "failed"

    cancelled = pending_transfer(alice, a, b, "10.00")
    sql("UPDATE transactions SET status = 'cancelled' WHERE id = :id", id=cancelled)
    assert post(cancelled).status == "noop"
    assert transaction(cancelled).status == "cancelled"
    assert (balance(a), balance(b)) == ("100.00", "5.00")


def test_an_unknown_transaction_is_missing():
    unknown = uuid.uuid4()
    assert post(unknown) == Outcome(unknown, "missing")


def test_a_missing_balance_row_is_ledger_corruption_and_writes_nothing(make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="20.00"), make.account(bob)
    tx_id = pending_transfer(alice, a, b, "1.00")
    sql("DELETE FROM balances WHERE account_id = :id", id=str(b))

    with pytest.raises(LedgerCorrupted, match=str(b)):
        post(tx_id)

    assert transaction(tx_id).status == "pending"
    assert entries_of(tx_id) == [] and balance(a) == "20.00"


def test_the_overdraft_floor_is_the_limit_of_insufficient_funds(pair):
    alice, a, b = pair
    sql("UPDATE balances SET overdraft_limit_minor = 5000 WHERE account_id = :id", id=str(a))
    [over], [exact] = bulk_pending(alice, a, b, 1, amount_minor=15001), bulk_pending(alice, a, b, 1, 15000)
    assert post(over).failure_code == "insufficient_funds"
    assert post(exact).status == "completed"
    assert balance(a) == "-50.00"


def group(tx_ids) -> list[Outcome]:
    with unit_of_work() as uow:
        return apply_group(uow.session, [uuid.UUID(str(t)) for t in tx_ids])


def test_a_balance_that_would_leave_bigint_is_amount_out_of_range_not_an_error(make):
    """Issue 11 item 14: sums of allowed amounts can overflow a BIGINT balance. The engine
    decides it (failed, amount_out_of_range), moves nothing, and keeps deciding: the next
    transfer that fits still completes."""
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    sql("UPDATE balances SET balance_minor = :v WHERE account_id = :id", v=BIGINT_MAX - 50, id=str(b))
    over, fits = bulk_pending(alice, a, b, 1, amount_minor=51) + bulk_pending(alice, a, b, 1, amount_minor=50)

    assert [(o.status, o.failure_code) for o in group([over, fits])] == [
        ("failed", "amount_out_of_range"),
        ("completed", None),
    ]
    assert transaction(over).failure_message and entries_of(over) == []
    assert sql("SELECT balance_minor FROM balances WHERE account_id = :id", id=str(b))[0][0] == BIGINT_MAX
    assert audit_log(over)[-1].data == {"failure_code": "amount_out_of_range"}


def test_a_system_account_below_bigint_is_amount_out_of_range(make):
    """The currency's system account (no floor) is the side that overflows on credits."""
    finance, bob = make.user("finance"), make.user()
    b = make.account(bob)
    credit = pending_movement(finance, "credit", "1.00", account_id=b)
    sql(
        "UPDATE balances SET balance_minor = :v WHERE account_id = "
        "(SELECT from_account_id FROM transactions WHERE id = :tx)",
        v=BIGINT_MIN + 1,
        tx=credit,
    )
    outcome = post(credit)
    assert (outcome.status, outcome.failure_code) == ("failed", "amount_out_of_range")
    assert balance(b) == "0.00"


def test_a_group_decides_oldest_first_against_the_moving_balances_and_skips_decided_rows(pair):
    """One posting for many rows: each sees what the older ones moved; one row's failure
    fails only that row; rows no longer pending are a noop; every decided row gets its
    own audit row; outcomes come back in the order asked."""
    alice, a, b = pair
    ids = bulk_pending(alice, a, b, 4, amount_minor=4000)  # 100.00 covers two of 40.00 ...
    sql("UPDATE transactions SET status = 'cancelled' WHERE id = :id", id=ids[1])
    refill = bulk_pending(alice, b, a, 1, amount_minor=500)  # ... and, newest, 5.00 back

    outcomes = group(list(reversed(ids)) + refill)

    by_id = {str(o.transaction_id): (o.status, o.failure_code) for o in outcomes}
    assert [str(o.transaction_id) for o in outcomes] == list(reversed(ids)) + refill
    assert by_id == {
        ids[0]: ("completed", None),
        ids[1]: ("noop", None),
        ids[2]: ("completed", None),
        ids[3]: ("failed", "insufficient_funds"),  # 20.00 left when its turn came
        refill[0]: ("completed", None),
    }
    assert (balance(a), balance(b)) == ("25.00", "80.00")
    assert {tx: audit_log(tx)[-1].action for tx in (ids[0], ids[3])} == {
        ids[0]: "transaction.completed",
        ids[3]: "transaction.failed",
    }
    assert len(entries_of(ids[2])) == 2 and entries_of(ids[3]) == []
    # balance_after follows the order of decision through the group
    afters = sql(
        "SELECT e.balance_after_minor FROM ledger_entries e JOIN transactions t ON t.id = e.transaction_id "
        "WHERE e.account_id = :a ORDER BY e.id",
        a=str(a),
    )
    assert [row[0] for row in afters][-3:] == [6000, 2000, 2500]


# --- decide: the pure rules --------------------------------------------------------------


def _rows(status="active", currency="USD", balance_minor=1000, overdraft=0, allow_negative=False):
    account = Account(id=uuid.uuid4(), status=status, currency=currency, kind="user")
    return account, Balance(
        account_id=account.id,
        currency=currency,
        balance_minor=balance_minor,
        overdraft_limit_minor=overdraft,
        allow_negative=allow_negative,
    )


def _tx(amount_minor=500, currency="USD") -> Transaction:
    return Transaction(id=uuid.uuid4(), type="transfer", amount_minor=amount_minor, currency=currency)


def test_decide_checks_the_target_account_too():
    assert decide(_tx(), _rows(), _rows(status="closed")).failure_code == "account_inactive"
    assert decide(_tx(), _rows(), _rows(currency="EUR")).failure_code == "currency_mismatch"


def test_decide_counts_usage_against_the_daily_limit_and_the_per_minute_count():
    daily = limits_rules.Limits(daily_outgoing_minor=1000)
    assert decide(_tx(500), _rows(), _rows(), daily, limits_rules.Usage(500, 0)).status == "completed"
    assert decide(_tx(501), _rows(), _rows(), daily, limits_rules.Usage(500, 0)).failure_code == (
        "limit_exceeded"
    )
    per_minute = limits_rules.Limits(per_minute_outgoing_count=2)
    assert decide(_tx(), _rows(), _rows(), per_minute, limits_rules.Usage(0, 1)).status == "completed"
    assert decide(_tx(), _rows(), _rows(), per_minute, limits_rules.Usage(0, 2)).failure_code == (
        "limit_exceeded"
    )


def test_decide_lets_system_accounts_go_negative_without_a_floor():
    system = _rows(balance_minor=0, allow_negative=True)
    assert decide(_tx(10**12), system, _rows()).status == "completed"
    assert decide(_tx(1001), _rows(balance_minor=1000), _rows()).failure_code == "insufficient_funds"
    assert decide(_tx(1000), _rows(balance_minor=1000), _rows()).status == "completed"


def test_decide_refuses_balances_outside_bigint_on_either_side():
    assert decide(_tx(2), _rows(), _rows(balance_minor=BIGINT_MAX - 1)).failure_code == "amount_out_of_range"
    assert decide(_tx(1), _rows(), _rows(balance_minor=BIGINT_MAX - 1)).status == "completed"
    system = _rows(balance_minor=BIGINT_MIN + 1, allow_negative=True)
    assert decide(_tx(2), system, _rows()).failure_code == "amount_out_of_range"
    assert decide(_tx(1), system, _rows()).status == "completed"
