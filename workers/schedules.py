"""Standing orders: the `schedules.run_due` tick creates each due run's transaction
(see db/schedules/service.py) and sends it to `transactions.apply`."""

from __future__ import annotations

import uuid
from datetime import datetime

import dramatiq
from prometheus_client import Counter

from db.core.config import get_settings
from db.core.logs import get_logger
from db.schedules import service as schedules
from db.session import database_now, unit_of_work
from workers.maintenance import stale_tick
from workers.middleware import never_retry
from workers.transactions import apply_transaction

log = get_logger(__name__)

RUNS_CREATED = Counter("ledgerq_schedule_runs_created_total", "Standing-order runs created")


@dramatiq.actor(actor_name="schedules.run_due", queue_name="maintenance", retry_when=never_retry)
def run_due() -> None:
    """Create the runs of every standing order that has come due, once each."""
    if not stale_tick():
        create_due_runs()


def create_due_runs(now: datetime | None = None) -> list[uuid.UUID]:
    """The tick's work: the new runs' transaction ids, already enqueued. `now` defaults
    to the clock; tests pass their own."""
    settings = get_settings()
    with unit_of_work() as uow:
        ids = schedules.run_due(
            uow.session,
            now=now or database_now(uow.session),
            settings=settings,
            limit=settings.sweeper_batch_size,
        )
        for tx_id in ids:
            uow.enqueue(apply_transaction, transaction_id=str(tx_id))
    if ids:
        RUNS_CREATED.inc(len(ids))
        log.info("schedules.runs_created", count=len(ids))
    return ids
