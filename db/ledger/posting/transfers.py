"""Transfers, credits, debits and reversals through the engine: step 4 of DESIGN.md,
inside the caller's single DB transaction (the worker's unit of work).

`apply_group` locks the rows, leaves every row no longer `pending` alone (this is what
makes redelivery harmless: exactly-once comes from the status under the lock), and
hands the rest, oldest first, to one `engine.post`. The caller commits. A business
outcome is a `failed` status (`rules`), never an exception; an exception means "could
not decide" and rolls the whole group back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from db.ledger.posting import engine, holds
from db.transactions import repository as transactions_repo


@dataclass(frozen=True)
class Outcome:
    transaction_id: uuid.UUID
    status: str  # completed | held | failed | noop | missing
    failure_code: str | None = None
    # A standing order's run: the caller moves the schedule's failure streak with it.
    schedule_id: uuid.UUID | None = None
    # What the worker's metrics label an outcome with ("" for noop and missing).
    type: str = field(default="", compare=False)
    currency: str = field(default="", compare=False)


def apply_group(session: Session, transaction_ids: list[uuid.UUID]) -> list[Outcome]:
    """Apply every still-pending row of `transaction_ids` in one posting; one Outcome per
    id, in the order given."""
    rows = transactions_repo.lock_for_posting(session, transaction_ids)
    found = {row.id: row for row in rows}
    # A capture's hold is locked before the engine locks accounts (db/ledger/posting/holds.py).
    pending = holds.with_holds(session, [row for row in rows if row.status == "pending"])
    # A group's statuses, events and audit rows are written before its accounts are
    # locked when its items allow it (engine.post_deciding_first): concurrent groups
    # queue on those locks.
    post = engine.post_deciding_first if engine.decides_first(pending) else engine.post
    decided = {d.item.id: d for d in post(session, pending)}
    outcomes = []
    for tx_id in transaction_ids:
        row = found.get(tx_id)
        if row is None:
            outcomes.append(Outcome(tx_id, "missing"))
        elif tx_id not in decided:
            # Redelivery, another worker's group, or cancelled meanwhile: already decided.
            outcomes.append(Outcome(tx_id, "noop"))
        else:
            decision = decided[tx_id].decision
            outcomes.append(
                Outcome(
                    tx_id, decision.status, decision.failure_code, row.schedule_id, row.type, row.currency
                )
            )
    return outcomes


def apply_transaction(session: Session, transaction_id: uuid.UUID) -> Outcome:
    """One transaction: a group of one."""
    return apply_group(session, [transaction_id])[0]
