"""APScheduler (3.x) process. It only sends ticks to actors; the actors claim due rows
with FOR UPDATE SKIP LOCKED, so a second scheduler or a redelivered tick can never
release the same row twice.

Jobs coalesce (a backlog of missed ticks runs once) and never overlap (max_instances=1):
a tick is idempotent, so running it late or once instead of five times loses nothing.
"""

from __future__ import annotations

import signal

from apscheduler.schedulers.blocking import BlockingScheduler

from db.config import Settings
from db.logs import get_logger

log = get_logger(__name__)


def _send(actor) -> None:
    try:
        actor.send()
    except Exception as exc:  # noqa: BLE001 - Redis down: the next tick tries again
        log.warning("scheduler.tick_not_sent", actor=actor.actor_name, error=str(exc))


def build_scheduler(settings: Settings) -> BlockingScheduler:
    from workers.maintenance import release_scheduled, sweep_pending

    scheduler = BlockingScheduler(
        timezone="UTC",
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
    )
    scheduler.add_job(
        _send, "interval", args=[sweep_pending], seconds=settings.sweeper_interval_s, id="sweep_pending"
    )
    scheduler.add_job(_send, "interval", args=[release_scheduled], seconds=1, id="release_scheduled")
    _add_batch_jobs(scheduler, settings)
    return scheduler


def _add_batch_jobs(scheduler: BlockingScheduler, settings: Settings) -> None:
    from scheduler.inbox import scan_inbox
    from workers.batches import release_due, sweep_stalled

    scheduler.add_job(_send, "interval", args=[release_due], seconds=1, id="release_batches")
    scheduler.add_job(
        _send, "interval", args=[sweep_stalled], seconds=settings.sweeper_interval_s, id="sweep_batches"
    )
    if settings.batch_inbox_dir:
        # Filesystem work on this host, so it runs here (see scheduler/inbox.py).
        scheduler.add_job(
            scan_inbox, "interval", args=[settings], seconds=settings.batch_inbox_interval_s, id="batch_inbox"
        )


def run(settings: Settings) -> None:
    scheduler = build_scheduler(settings)

    def _stop(signum, _frame):
        log.info("scheduler.stopping", signal=signum)
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("scheduler.started", jobs=[job.id for job in scheduler.get_jobs()])
    scheduler.start()
