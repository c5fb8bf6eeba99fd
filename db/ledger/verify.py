"""`ledgerq verify`: the invariants of DESIGN.md, checked in SQL against the live data.

Each check returns human-readable problems; an empty list means the ledger is sound.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.core.money import format_minor
from db.events.verify import check_final_transactions_announced

# Invariant 6 is about liveness: a pending row idle this long means nothing is applying it.
STUCK_PENDING_AFTER = "1 hour"


def _rows(session: Session, sql: str):
    return session.execute(text(sql)).all()


def check_currency_sums(session: Session) -> list[str]:
    return [
        f"currency {currency}: balances sum to {format_minor(total, currency)}, not 0"
        for currency, total in _rows(
            session,
            "SELECT currency, SUM(balance_minor) FROM balances GROUP BY currency HAVING SUM(balance_minor) <> 0",
        )
    ]


def check_balances_match_entries(session: Session) -> list[str]:
    return [
        f"account {account_id}: balance {format_minor(balance, currency)} but entries sum to "
        f"{format_minor(entries, currency)}"
        for account_id, currency, balance, entries in _rows(
            session,
            """
            SELECT b.account_id, b.currency, b.balance_minor, COALESCE(SUM(e.amount_minor), 0)
            FROM balances b LEFT JOIN ledger_entries e ON e.account_id = b.account_id
            GROUP BY b.account_id, b.currency, b.balance_minor
            HAVING b.balance_minor <> COALESCE(SUM(e.amount_minor), 0)
            """,
        )
    ]


def check_running_balances(session: Session) -> list[str]:
    return [
        f"ledger entry {entry_id} (account {account_id}): balance_after {after} but running sum is {running}"
        for entry_id, account_id, after, running in _rows(
            session,
            """
            SELECT id, account_id, balance_after_minor, running FROM (
                SELECT id, account_id, balance_after_minor,
                       SUM(amount_minor) OVER (PARTITION BY account_id ORDER BY id) AS running
                FROM ledger_entries) t
            WHERE balance_after_minor <> running
            LIMIT 100
            """,
        )
    ]


def check_entries_per_transaction(session: Session) -> list[str]:
    return [
        f"transaction {tx_id} ({status}): {count} entries summing to {total}"
        + ("" if currency_ok else ", in the wrong currency")
        for tx_id, status, count, total, currency_ok in _rows(
            session,
            """
            SELECT t.id, t.status, COUNT(e.id), COALESCE(SUM(e.amount_minor), 0),
                   BOOL_AND(e.currency IS NULL OR e.currency = t.currency)
            FROM transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id
            GROUP BY t.id, t.status
            HAVING (t.status = 'completed' AND (COUNT(e.id) <> 2 OR SUM(e.amount_minor) <> 0
                        OR MAX(e.amount_minor) <> MAX(t.amount_minor)))
                OR (t.status <> 'completed' AND COUNT(e.id) <> 0)
                OR NOT BOOL_AND(e.currency IS NULL OR e.currency = t.currency)
            LIMIT 100
            """,
        )
    ]


def check_no_overdrawn_accounts(session: Session) -> list[str]:
    # Only the current balance against the current floor: finance may lower an overdraft
    # limit once the balance is back above the new floor, so an old entry's balance_after
    # below today's floor is history, not corruption. Every past balance was held to the
    # floor of its time by the CHECK on `balances`, and check_running_balances ties each
    # entry's balance_after to the balances that CHECK saw.
    return [
        f"account {account_id}: balance {format_minor(balance, currency)} is below its overdraft limit"
        for account_id, currency, balance in _rows(
            session,
            """
            SELECT account_id, currency, balance_minor FROM balances
            WHERE NOT allow_negative AND balance_minor < -overdraft_limit_minor
            """,
        )
    ]


def check_append_only_triggers(session: Session) -> list[str]:
    present = {
        name
        for (name,) in _rows(
            session,
            "SELECT tgname FROM pg_trigger WHERE tgname IN ('ledger_entries_append_only', 'audit_logs_append_only')",
        )
    }
    return [
        f"trigger {name} is missing: {name.split('_append')[0]} can be changed"
        for name in ("ledger_entries_append_only", "audit_logs_append_only")
        if name not in present
    ]


def check_nothing_stuck(session: Session) -> list[str]:
    return [
        f"{count} pending transaction(s) untouched for over {STUCK_PENDING_AFTER} (are workers and the scheduler running?)"
        for (count,) in _rows(
            session,
            f"SELECT COUNT(*) FROM transactions WHERE status = 'pending' "
            f"AND updated_at < now() - interval '{STUCK_PENDING_AFTER}' HAVING COUNT(*) > 0",
        )
    ]


CHECKS = (
    check_currency_sums,
    check_balances_match_entries,
    check_running_balances,
    check_entries_per_transaction,
    check_no_overdrawn_accounts,
    check_append_only_triggers,
    check_nothing_stuck,
    check_final_transactions_announced,
)


def verify_ledger(session: Session) -> list[str]:
    problems: list[str] = []
    for check in CHECKS:
        problems.extend(check(session))
    return problems
