"""Actors of the `transactions` queue: applying transfers to the ledger (step 4)."""

from __future__ import annotations

import time
import uuid

import dramatiq
from prometheus_client import Counter, Histogram
from sqlalchemy import update

from db.audit import repository as audit
from db.core.logs import get_logger
from db.events import outbox
from db.ledger.posting import apply_transaction as post_to_ledger
from db.models import Transaction
from db.schedules.service import record_run_outcome
from db.session import session_factory, unit_of_work
from workers.middleware import on_dead_letter

log = get_logger(__name__)

APPLIED = Counter(
    "ledgerq_transactions_applied_total",
    "Transactions decided by workers (a count: amounts are never exported as floats)",
    ["status", "failure_code", "type", "currency"],
)
DEAD_LETTERED = Counter("ledgerq_transactions_dead_lettered_total", "Transactions dead-lettered")
APPLY_SECONDS = Histogram("ledgerq_transaction_apply_seconds", "Time to apply one transaction")


@dramatiq.actor(actor_name="transactions.apply", queue_name="transactions")
def apply_transaction(transaction_id: str) -> None:
    """Apply one transaction exactly once, however often the message is delivered."""
    tx_id = uuid.UUID(transaction_id)
    _count_attempt(tx_id)
    started = time.perf_counter()
    with unit_of_work() as uow:
        outcome = post_to_ledger(uow.session, tx_id)
        # Already in the session's identity map (posting loaded it): no extra query.
        decided = uow.session.get(Transaction, tx_id)
        kind, currency = (decided.type, decided.currency) if decided is not None else ("", "")
        if outcome.schedule_id is not None:
            record_run_outcome(
                uow.session,
                outcome.schedule_id,
                transaction_id=tx_id,
                status=outcome.status,
                failure_code=outcome.failure_code,
            )
    elapsed = time.perf_counter() - started
    if outcome.status in ("completed", "failed"):
        APPLIED.labels(outcome.status, outcome.failure_code or "", kind, currency).inc()
        APPLY_SECONDS.observe(elapsed)
    log.info(
        "transactions.applied",
        id=transaction_id,
        status=outcome.status,
        failure_code=outcome.failure_code,
        ms=round(elapsed * 1000, 2),
    )


def _count_attempt(tx_id: uuid.UUID) -> None:
    """Record the attempt (and touch the row, so the sweeper leaves it to the retries)
    in its own short transaction, committed even when the application then fails."""
    with session_factory()() as session, session.begin():
        session.execute(
            update(Transaction)
            .where(Transaction.id == tx_id, Transaction.status == "pending")
            .values(attempts=Transaction.attempts + 1)
        )


@on_dead_letter("transactions.apply")
def record_dead_letter(kwargs: dict, reason: str) -> None:
    tx_id = uuid.UUID(kwargs["transaction_id"])
    with unit_of_work() as uow:
        result = uow.session.execute(
            update(Transaction)
            .where(Transaction.id == tx_id, Transaction.status == "pending")
            .values(status="dead_lettered", last_error=reason[:2000])
        )
        changed = result.rowcount  # type: ignore[attr-defined]  # an UPDATE returns a CursorResult
        if changed:
            audit.record(
                uow.session,
                action="transaction.dead_lettered",
                entity_type="transaction",
                entity_id=tx_id,
                data={"reason": reason[:500]},
            )
            outbox.record(uow.session, outbox.transactions_by_id(uow.session, [tx_id]))
    if changed:
        DEAD_LETTERED.inc()
