"""The scheduler process (APScheduler 3.x). It only decides *when*: it sends ticks to
actors, and the actors claim due rows with FOR UPDATE SKIP LOCKED, so a second
scheduler or a redelivered tick can never release the same row twice.

APScheduler 3.x has no coordination between processes, so:
- one instance is the leader (a PostgreSQL advisory lock, `scheduler/leader.py`); the
  others keep their APScheduler paused and retry the lock every
  `SCHEDULER_LEADER_RETRY_SECONDS`. If the leader dies a standby takes over;
- no state lives in APScheduler (memory job store): what is due is in PostgreSQL
  (`transactions.scheduled_for`, `schedules.next_run_at`), so a restart or a new leader
  loses nothing and repeats nothing. Missed standing-order runs follow each schedule's
  `misfire_policy` (db/schedules/recurrence.py), not APScheduler's misfire handling.

Job defaults, set deliberately for ticks:
- `coalesce=True`: a backlog of missed ticks (the process was paused, a GC stall, a
  standby just became leader) is worth exactly one tick; ticks are idempotent.
- `misfire_grace_time=None`: a late tick is still useful, so never drop one for being
  late (APScheduler's default of 1 s would skip it and log a warning).
- `max_instances=1`: sending a tick takes a millisecond; never overlap one with itself.
"""

from __future__ import annotations

import signal
import threading

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING, BaseScheduler

from db.core.config import Settings
from db.core.logs import get_logger
from scheduler import metrics
from scheduler.leader import LeaderLock

log = get_logger(__name__)

JOB_DEFAULTS = {"coalesce": True, "misfire_grace_time": None, "max_instances": 1}


def _send(actor) -> None:
    try:
        actor.send()
    except Exception as exc:  # noqa: BLE001 - Redis down: the next tick tries again
        log.warning("scheduler.tick_not_sent", actor=actor.actor_name, error=str(exc))


def build_scheduler(
    settings: Settings, scheduler_cls: type[BaseScheduler] = BackgroundScheduler
) -> BaseScheduler:
    """The jobs: one tick per kind of due work, and the queue gauges."""
    from workers.holds import expire_holds
    from workers.maintenance import release_scheduled, sweep_pending
    from workers.schedules import run_due

    scheduler = scheduler_cls(timezone="UTC", job_defaults=JOB_DEFAULTS)
    ticks = [
        (release_scheduled, settings.scheduler_tick_s),  # due one-shot transfers, within ~1 tick
        (run_due, settings.scheduler_tick_s),  # standing orders
        (sweep_pending, settings.sweeper_interval_s),  # pending rows Redis lost
        (expire_holds, settings.scheduler_tick_s),  # holds past expires_at, released within ~1 tick
    ]
    for actor, seconds in ticks:
        scheduler.add_job(_send, "interval", args=[actor], seconds=seconds, id=actor.actor_name)
    scheduler.add_job(
        metrics.refresh_queue_gauges, "interval", seconds=settings.scheduler_queue_gauges_s, id="queue_gauges"
    )
    _add_batch_jobs(scheduler, settings)
    _add_event_jobs(scheduler, settings)
    _add_anchor_job(scheduler)
    _add_analytics_job(scheduler)
    return scheduler


# The ledger's daily anchor is written by the first tick of each UTC day; a tick on a
# day already anchored does nothing, so ticking every few minutes bounds the delay.
ANCHOR_TICK_S = 300


def _add_anchor_job(scheduler: BaseScheduler) -> None:
    from workers.maintenance import anchor_ledger

    scheduler.add_job(_send, "interval", args=[anchor_ledger], seconds=ANCHOR_TICK_S, id="ledger_anchor")


# Closed days' rollup shards folded into one row each (workers/analytics.py): only
# yesterday's are new after midnight, so hourly bounds how long a day reads 16 rows.
ANALYTICS_FOLD_TICK_S = 3600


def _add_analytics_job(scheduler: BaseScheduler) -> None:
    from workers.analytics import fold_analytics

    scheduler.add_job(
        _send, "interval", args=[fold_analytics], seconds=ANALYTICS_FOLD_TICK_S, id="analytics_fold"
    )


def _add_event_jobs(scheduler: BaseScheduler, settings: Settings) -> None:
    from workers.webhooks import dispatch_tick, prune_events

    scheduler.add_job(
        _send, "interval", args=[dispatch_tick], seconds=settings.scheduler_tick_s, id="webhooks_dispatch"
    )
    scheduler.add_job(
        _send, "interval", args=[prune_events], seconds=settings.event_prune_interval_s, id="events_prune"
    )


def _add_batch_jobs(scheduler: BaseScheduler, settings: Settings) -> None:
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


class SchedulerProcess:
    """APScheduler plus leadership: jobs run only while this instance holds the lock."""

    def __init__(self, settings: Settings, *, leader: LeaderLock | None = None) -> None:
        self.settings = settings
        self.scheduler = build_scheduler(settings)
        self.leader = leader or LeaderLock(settings.database_url)
        self.stopping = threading.Event()

    @property
    def is_leader(self) -> bool:
        return self.scheduler.state == STATE_RUNNING

    def step(self) -> bool:
        """One election round: take (or keep) the lock and run jobs, or stand by."""
        if self.leader.acquire():
            if self.scheduler.state == STATE_PAUSED:
                self.scheduler.resume()
                log.info("scheduler.leader_elected")
                # Gauges at once, not one SCHEDULER_QUEUE_GAUGE_SECONDS later.
                metrics.refresh_queue_gauges()
        elif self.scheduler.state == STATE_RUNNING:
            self.scheduler.pause()
            metrics.forget_gauges()
            log.warning("scheduler.standing_by")
        metrics.LEADER.set(1 if self.is_leader else 0)
        return self.is_leader

    def run(self) -> None:
        self.scheduler.start(paused=True)
        log.info("scheduler.started", jobs=[job.id for job in self.scheduler.get_jobs()])
        try:
            while not self.stopping.is_set():
                try:
                    self.step()
                except Exception:  # noqa: BLE001 - never die of one bad round; retry
                    log.exception("scheduler.election_failed")
                self.stopping.wait(self.settings.scheduler_leader_retry_s)
        finally:
            self.scheduler.shutdown(wait=False)
            self.leader.release()
            metrics.LEADER.set(0)
            metrics.forget_gauges()
            log.info("scheduler.stopped")

    def stop(self) -> None:
        self.stopping.set()


def run(settings: Settings) -> None:
    metrics.serve(settings.scheduler_metrics_port, settings.web_host)
    process = SchedulerProcess(settings)

    def _stop(signum, _frame):
        log.info("scheduler.stopping", signal=signum)
        process.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    process.run()
