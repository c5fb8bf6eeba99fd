"""The analytics fold tick (`maintenance` queue): the shards of closed days are folded
into one row per (day, currency) (db/analytics/repository.py FOLD_CLOSED_DAYS), so a
year's daily figures read ~1 row per day and currency instead of 16. Safe beside
writers and beside a second fold (a rebuild's), so it needs no claim; the scheduler
(leader-elected) sends it hourly, and like the other ticks it is never retried and
skips a stale message (workers/maintenance.py)."""

from __future__ import annotations

import dramatiq
from sqlalchemy.exc import OperationalError

from db.analytics import service
from db.core.logs import get_logger
from db.session import unit_of_work
from workers.maintenance import stale_tick
from workers.middleware import never_retry

log = get_logger(__name__)

# Batches per run: a year of backlog is 12; writers that keep adding late shares to old
# days cannot keep one run going for ever.
MAX_BATCHES = 100


@dramatiq.actor(actor_name="analytics.fold_closed_days", queue_name="maintenance", retry_when=never_retry)
def fold_analytics() -> None:
    if not stale_tick():
        fold_closed_days()


def fold_closed_days() -> int:
    """Fold every closed day's shards, one committed batch of days at a time; the
    (day, currency) rows written. Behind a writer's lock it stops (logged): the next
    run goes on where this one stopped."""
    written = 0
    try:
        for _ in range(MAX_BATCHES):
            with unit_of_work() as uow:
                rows = service.fold_closed_days(uow.session)
            if not rows:
                break
            written += rows
    except OperationalError as exc:
        log.warning("analytics.fold_postponed", error=str(exc.orig)[:200], folded=written)
        return written
    if written:
        log.info("analytics.folded", rows=written)
    return written
