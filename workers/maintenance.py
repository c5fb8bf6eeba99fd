"""Actors of the `maintenance` queue. The scheduler only decides *when* (it sends a tick);
the work happens here, claiming rows with FOR UPDATE SKIP LOCKED so two schedulers or a
redelivered tick can never release the same row twice."""

from __future__ import annotations

from datetime import UTC, datetime

import dramatiq
from prometheus_client import Counter

from db.config import get_settings
from db.logs import get_logger
from db.repositories import transactions as transactions_repo
from db.session import unit_of_work
from workers.transactions import apply_transaction

log = get_logger(__name__)

REENQUEUED = Counter(
    "ledgerq_sweeper_reenqueued_total", "Stale pending transactions re-enqueued by the sweeper"
)
RELEASED = Counter("ledgerq_scheduled_released_total", "Scheduled transactions released when due")


@dramatiq.actor(actor_name="maintenance.sweep_pending", queue_name="maintenance", max_retries=0)
def sweep_pending() -> None:
    # A tick is cheap and the next one comes in seconds: no retries.
    sweep_stale_pending()


@dramatiq.actor(actor_name="maintenance.release_scheduled", queue_name="maintenance", max_retries=0)
def release_scheduled() -> None:
    release_due_scheduled()


def sweep_stale_pending() -> int:
    """Re-enqueue `pending` rows nobody touched for `sweeper_stale_after_s` (Redis lost
    the message, or was down when the API accepted the request). Harmless when the
    original message is still around: the second delivery is a no-op."""
    settings = get_settings()
    with unit_of_work() as uow:
        ids = transactions_repo.claim_stale_pending(
            uow.session,
            stale_after_s=settings.sweeper_stale_after_s,
            min_backoff_s=settings.worker_min_backoff_ms / 1000,
            max_backoff_s=settings.worker_max_backoff_ms / 1000,
            limit=settings.sweeper_batch_size,
        )
        for tx_id in ids:
            uow.enqueue(apply_transaction, transaction_id=str(tx_id))
    if ids:
        REENQUEUED.inc(len(ids))
        log.warning("sweeper.reenqueued", count=len(ids))
    return len(ids)


def release_due_scheduled() -> int:
    """Move due `scheduled` transactions to `pending` and enqueue them."""
    settings = get_settings()
    with unit_of_work() as uow:
        ids = transactions_repo.claim_due_scheduled(
            uow.session, now=datetime.now(UTC), limit=settings.sweeper_batch_size
        )
        for tx_id in ids:
            uow.enqueue(apply_transaction, transaction_id=str(tx_id))
    if ids:
        RELEASED.inc(len(ids))
        log.info("scheduler.released", count=len(ids))
    return len(ids)
