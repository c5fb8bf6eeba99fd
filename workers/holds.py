"""The hold expiry tick (`maintenance` queue): holds still `held` at their `expires_at`
are released (`expired`), by the database's clock, claimed FOR UPDATE SKIP LOCKED so two
schedulers, a redelivered tick or a concurrent void never release a hold twice. The
scheduler (leader-elected) only sends the tick; like the other ticks it is never
retried and skips a stale message (workers/maintenance.py)."""

from __future__ import annotations

from datetime import datetime

import dramatiq
from prometheus_client import Counter

from db.core.config import get_settings
from db.core.logs import get_logger
from db.holds.service import expire_due
from db.session import database_now, unit_of_work
from workers.maintenance import stale_tick
from workers.middleware import never_retry

log = get_logger(__name__)

EXPIRED = Counter("ledgerq_holds_expired_total", "Holds released at their expires_at")


@dramatiq.actor(actor_name="holds.expire_due", queue_name="maintenance", retry_when=never_retry)
def expire_holds() -> None:
    if not stale_tick():
        expire_due_holds()


def expire_due_holds(now: datetime | None = None) -> int:
    """Release the holds due by `now` (default: the database's clock; tests pass their
    own), up to `sweeper_batch_size` per run; how many."""
    with unit_of_work() as uow:
        ids = expire_due(
            uow.session, now=now or database_now(uow.session), limit=get_settings().sweeper_batch_size
        )
    if ids:
        EXPIRED.inc(len(ids))
        log.info("holds.expired", count=len(ids))
    return len(ids)
