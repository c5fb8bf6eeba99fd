"""Actors of the `maintenance` queue. The scheduler only decides *when* (it sends a tick);
the work happens here, claiming rows with FOR UPDATE SKIP LOCKED so two schedulers or a
redelivered tick can never release the same row twice.

Ticks carry no arguments and are idempotent: a late or duplicated tick does the same
work as a punctual one. A tick that waited in Redis longer than `TICK_MAX_AGE_MS`
(workers were down while the scheduler kept ticking) is acknowledged without work:
the next fresh tick covers everything, so a backlog drains at Redis speed, not at one
database round trip per stale tick. (Dramatiq's AgeLimit is not used for this: it
would dead-letter them.)
"""

from __future__ import annotations

from datetime import datetime

import dramatiq
from dramatiq.common import current_millis
from dramatiq.middleware import CurrentMessage
from prometheus_client import Counter

from db.core.config import get_settings
from db.core.logs import get_logger
from db.session import database_now, unit_of_work
from db.transactions import repository as transactions_repo
from db.transactions.service import release_due
from workers.middleware import never_retry
from workers.transactions import apply_transaction

log = get_logger(__name__)

TICK_MAX_AGE_MS = 30_000

REENQUEUED = Counter(
    "ledgerq_sweeper_reenqueued_total", "Stale pending transactions re-enqueued by the sweeper"
)
RELEASED = Counter("ledgerq_scheduled_released_total", "Scheduled transactions released when due")


def stale_tick() -> bool:
    """True when the tick being processed is older than TICK_MAX_AGE_MS."""
    message = CurrentMessage.get_current_message()
    return message is not None and current_millis() - message.message_timestamp > TICK_MAX_AGE_MS


# Ticks are cheap and the next one comes in seconds: never retried (`never_retry`).
# They return None (there is no result backend); the functions they call return what
# tests check.


@dramatiq.actor(actor_name="maintenance.sweep_pending", queue_name="maintenance", retry_when=never_retry)
def sweep_pending() -> None:
    if not stale_tick():
        sweep_stale_pending()


@dramatiq.actor(actor_name="maintenance.release_scheduled", queue_name="maintenance", retry_when=never_retry)
def release_scheduled() -> None:
    if not stale_tick():
        release_due_scheduled()


@dramatiq.actor(actor_name="maintenance.anchor_ledger", queue_name="maintenance", retry_when=never_retry)
def anchor_ledger() -> None:
    if not stale_tick():
        anchor_ledger_today()


def anchor_ledger_today() -> dict | None:
    """Today's anchor of the hash chains (db/ledger/anchor.py), once per UTC day of the
    database's clock. Behind a long posting the table lock times out: the next tick
    tries again."""
    from sqlalchemy.exc import OperationalError

    from db.ledger import anchor

    try:
        with unit_of_work() as uow:
            data = anchor.anchor_today(uow.session, database_now(uow.session).date())
    except OperationalError as exc:
        log.warning("ledger.anchor_postponed", error=str(exc.orig)[:200])
        return None
    if data is not None:
        log.info("ledger.anchored", digest=data["digest"], last_entry_id=data["last_entry_id"])
    return data


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


def release_due_scheduled(now: datetime | None = None) -> int:
    """Move `scheduled` transactions due by `now` to `pending` and enqueue them; how many.
    `now` defaults to the clock; tests pass their own."""
    with unit_of_work() as uow:
        ids = release_due(
            uow.session, now=now or database_now(uow.session), limit=get_settings().sweeper_batch_size
        )
        for tx_id in ids:
            uow.enqueue(apply_transaction, transaction_id=str(tx_id))
    if ids:
        RELEASED.inc(len(ids))
        log.info("scheduler.released", count=len(ids))
    return len(ids)
