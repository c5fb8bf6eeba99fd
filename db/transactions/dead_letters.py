"""A transaction's dead letter: recorded when its message fails for good
(`pending -> dead_lettered`), and an operator's retry (`dead_lettered -> pending`)."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from db.audit import repository as audit
from db.core.errors import Conflict, NotFound
from db.core.principal import Principal
from db.events import outbox
from db.models import Transaction
from db.transactions import repository as transactions_repo


def record(session: Session, transaction_id: uuid.UUID, reason: str) -> bool:
    """Mark a still-pending transaction dead-lettered, with an audit entry; False when it
    was already decided (a late duplicate of its message)."""
    changed = transactions_repo.mark_dead_lettered(session, transaction_id, reason)
    if changed:
        audit.record(
            session,
            action="transaction.dead_lettered",
            entity_type="transaction",
            entity_id=transaction_id,
            data={"reason": reason[:500]},
        )
        outbox.record(session, outbox.transactions_by_id(session, [transaction_id]))
    return changed


def reopen(session: Session, transaction_id: uuid.UUID, actor: Principal | None) -> Transaction:
    """Put a dead-lettered transaction back to `pending` (the caller enqueues it).

    A row still `pending` (its dead letter could not be recorded) is returned as is:
    re-enqueueing it is harmless.
    """
    tx = transactions_repo.get_for_update(session, transaction_id)
    if tx is None:
        raise NotFound("transaction not found")
    if tx.batch_id is not None:
        # A batch line belongs to its batch: applied alone it could move money for an
        # atomic batch that reported nothing moved, and the single-transfer sweeper
        # skips batch lines, so a lost retry message would leave it pending forever.
        raise Conflict("this transaction is a batch line; it cannot be retried on its own")
    if tx.status == "dead_lettered":
        transactions_repo.mark_pending_again(session, tx.id)
        audit.record(
            session,
            action="transaction.dead_letter_retried",
            entity_type="transaction",
            entity_id=tx.id,
            actor_id=actor.id if actor else None,
        )
        session.flush()
        session.refresh(tx)
    elif tx.status != "pending":
        raise Conflict(f"transaction is {tx.status}; only dead_lettered transactions can be retried")
    return tx
