"""`ledgerq rebuild-balances`: recompute every balance from the immutable ledger entries.

The entries are the record; `balances` is a cache the worker keeps in step inside the
same transaction. If the two ever disagree (`ledgerq verify` says so), replaying the
entries is the repair. The table is locked against writers (EXCLUSIVE: reads go on) for
the duration, so no posting can interleave, and every corrected account gets an audit row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.audit import repository as audit


@dataclass(frozen=True)
class Correction:
    account_id: uuid.UUID
    currency: str
    was_minor: int
    now_minor: int


def rebuild_balances(session: Session, *, apply: bool) -> list[Correction]:
    session.execute(text("LOCK TABLE balances IN EXCLUSIVE MODE"))
    rows = session.execute(
        text(
            """
            SELECT b.account_id, b.currency, b.balance_minor, COALESCE(SUM(e.amount_minor), 0)
            FROM balances b LEFT JOIN ledger_entries e ON e.account_id = b.account_id
            GROUP BY b.account_id, b.currency, b.balance_minor
            HAVING b.balance_minor <> COALESCE(SUM(e.amount_minor), 0)
            ORDER BY b.account_id
            """
        )
    ).all()
    corrections = [
        Correction(account_id, currency, int(was), int(now)) for account_id, currency, was, now in rows
    ]
    if apply:
        for fix in corrections:
            session.execute(
                text("UPDATE balances SET balance_minor = :now, updated_at = now() WHERE account_id = :id"),
                {"now": fix.now_minor, "id": fix.account_id},
            )
            audit.record(
                session,
                action="balance.rebuilt",
                entity_type="account",
                entity_id=fix.account_id,
                data={"was_minor": fix.was_minor, "now_minor": fix.now_minor},
            )
    return corrections
