"""The holds' invariants for `ledgerq verify` (DESIGN.md invariant 7), one check each.

Available is not a stored figure: it is computed (db/accounts/repository.py `figures`)
as balance - pending outgoing - held, so what can drift is the stored `held_minor`.
Pending outgoing is not reserved (a pending transfer that the funds do not cover fails
when decided), so the floor applies to what is committed: balance - held.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.accounts import repository as accounts_repo
from db.core.money import format_minor
from db.holds import repository as holds_repo


def _rows(session: Session, sql: str):
    return session.execute(text(sql)).all()


def check_held_matches_holds(session: Session) -> list[str]:
    return [
        f"account {account_id}: held {format_minor(stored, currency)} but its held holds reserve "
        f"{format_minor(total, currency)}"
        for account_id, currency, stored, total in holds_repo.held_sums(session)
    ]


def check_available_balances(session: Session) -> list[str]:
    """What the API shows as available equals balance - pending outgoing - held,
    recomputed here independently, for every account."""
    rows = _rows(
        session,
        """
        SELECT b.account_id, b.currency, b.balance_minor - COALESCE(p.total, 0) - b.held_minor
        FROM balances b LEFT JOIN (
            SELECT from_account_id, SUM(amount_minor) AS total FROM transactions
            WHERE status = 'pending' GROUP BY from_account_id
        ) p ON p.from_account_id = b.account_id
        -- Elsewhere available is the balance itself: nothing pending, nothing held.
        WHERE b.held_minor <> 0 OR p.total IS NOT NULL
        LIMIT 10000
        """,
    )
    shown = accounts_repo.figures(session, [row[0] for row in rows])
    return [
        f"account {account_id}: available shown as {format_minor(shown[account_id].available_minor, currency)}, "
        f"but balance - pending - held is {format_minor(expected, currency)}"
        for account_id, currency, expected in rows
        if account_id in shown and shown[account_id].available_minor != expected
    ][:100]


def check_held_within_floor(session: Session) -> list[str]:
    return [
        f"account {account_id}: balance {format_minor(balance, currency)} minus held "
        f"{format_minor(held, currency)} is below its overdraft limit"
        for account_id, currency, balance, held in _rows(
            session,
            """
            SELECT account_id, currency, balance_minor, held_minor FROM balances
            WHERE held_minor < 0 OR (NOT allow_negative AND balance_minor - held_minor < -overdraft_limit_minor)
            LIMIT 100
            """,
        )
    ]


def check_hold_amounts(session: Session) -> list[str]:
    """held + captured <= amount; only a `held` hold reserves; only a `captured` one has
    a captured amount, equal to its completed capture's."""
    return [
        f"hold {hold_id} ({status}): held {held} + captured {captured} of {amount} minor units, "
        f"its completed capture moved {moved}"
        for hold_id, status, amount, held, captured, moved in _rows(
            session,
            """
            SELECT h.id, h.status, h.amount_minor, h.held_amount_minor, h.captured_amount_minor, c.amount_minor
            FROM transactions h
            LEFT JOIN transactions c ON c.captures = h.id AND c.status = 'completed'
            WHERE h.type = 'hold' AND (
                h.held_amount_minor IS NULL OR h.captured_amount_minor IS NULL
                OR h.held_amount_minor < 0 OR h.captured_amount_minor < 0
                OR h.held_amount_minor + h.captured_amount_minor > h.amount_minor
                OR (h.status = 'held') <> (h.held_amount_minor > 0)
                OR (h.status = 'captured') <> (c.id IS NOT NULL)
                OR (c.id IS NOT NULL AND c.amount_minor <> h.captured_amount_minor)
                OR (h.status <> 'captured' AND h.captured_amount_minor <> 0))
            LIMIT 100
            """,
        )
    ]


def check_hold_entries(session: Session) -> list[str]:
    """A hold never has ledger entries (money moves by its capture); a completed capture
    has exactly two, taking its amount from the hold's source to its target."""
    return [
        f"{kind} {tx_id} ({status}): {count} ledger entries"
        for tx_id, kind, status, count in _rows(
            session,
            """
            SELECT t.id, t.type, t.status, COUNT(e.id)
            FROM transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id
            WHERE t.type IN ('hold', 'capture')
            GROUP BY t.id, t.type, t.status
            HAVING (t.type = 'hold' AND COUNT(e.id) <> 0)
                OR (t.type = 'capture' AND t.status = 'completed' AND COUNT(e.id) <> 2)
                OR (t.type = 'capture' AND t.status <> 'completed' AND COUNT(e.id) <> 0)
            LIMIT 100
            """,
        )
    ]


def check_captures_match_holds(session: Session) -> list[str]:
    return [
        f"capture {capture_id}: does not move money from its hold {hold_id}'s source to its target"
        for capture_id, hold_id in _rows(
            session,
            """
            SELECT c.id, c.captures FROM transactions c JOIN transactions h ON h.id = c.captures
            WHERE c.type = 'capture' AND (h.type <> 'hold' OR c.from_account_id <> h.from_account_id
                OR c.to_account_id <> h.to_account_id OR c.currency <> h.currency)
            LIMIT 100
            """,
        )
    ]


def check_hold_decisions_announced(session: Session) -> list[str]:
    """The outbox's invariant for holds: every hold that was decided or released has the
    event of its status (`transaction.held|captured|voided|expired`), for decisions the
    outbox can still show (db/events/verify.py)."""
    return [
        f"hold {hold_id} is {status} but has no transaction.{status} event"
        for hold_id, status in _rows(
            session,
            """
            SELECT t.id, t.status FROM transactions t
            WHERE t.type = 'hold' AND t.status IN ('held', 'captured', 'voided', 'expired')
              AND t.updated_at >= (SELECT min(created_at) FROM events)
              AND NOT EXISTS (
                  SELECT 1 FROM events e
                  WHERE e.type = 'transaction.' || t.status AND e.data->>'id' = t.id::text
              )
            ORDER BY t.seq
            LIMIT 100
            """,
        )
    ]


CHECKS = (
    check_held_matches_holds,
    check_available_balances,
    check_held_within_floor,
    check_hold_amounts,
    check_hold_entries,
    check_captures_match_holds,
    check_hold_decisions_announced,
)
