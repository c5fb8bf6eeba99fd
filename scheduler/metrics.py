"""The scheduler's Prometheus endpoint: leadership, queue gauges and the backlog.

`ledgerq_queue_*` come from `workers.queues.queue_stats` (read-only Redis) and the
backlog gauges (`ledgerq_pending_transactions`, `ledgerq_oldest_pending_age_seconds`,
`ledgerq_scheduler_lag_seconds`, `ledgerq_batches_in_progress`,
`ledgerq_batch_oldest_idle_seconds`) from db/ops/backlog.py. The leader refreshes both
every `SCHEDULER_QUEUE_GAUGE_SECONDS` (and once on election); a scrape only reads the
last values. A standby exports `ledgerq_scheduler_leader 0` and none of the gauges, so
`max()` or `sum()` across instances is the leader's figure.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from prometheus_client import REGISTRY, Gauge
from prometheus_client.core import GaugeMetricFamily

from db.core.config import get_settings
from db.core.logs import get_logger
from db.ops.backlog import Backlog, backlog
from db.ops.metrics import SCHEDULER, make_server

log = get_logger(__name__)

LEADER = Gauge("ledgerq_scheduler_leader", "1 while this scheduler instance is the active leader")
QUEUE_DEPTH = Gauge("ledgerq_queue_depth", "Messages waiting to be fetched", ["queue"])
QUEUE_IN_FLIGHT = Gauge(
    "ledgerq_queue_in_flight", "Messages fetched by a worker, not yet acknowledged", ["queue"]
)
QUEUE_DELAYED = Gauge("ledgerq_queue_delayed", "Delayed messages (retry backoff, delay=)", ["queue"])
QUEUE_DEAD_LETTERS = Gauge("ledgerq_queue_dead_letters", "Messages in the dead-letter queue", ["queue"])
_QUEUE_GAUGES = (QUEUE_DEPTH, QUEUE_IN_FLIGHT, QUEUE_DELAYED, QUEUE_DEAD_LETTERS)


@dataclass(frozen=True)
class _Snapshot:
    backlog: Backlog
    taken_at: float  # Unix time


class BacklogCollector:
    """Exports the last backlog the leader measured; nothing before the first one or
    after stepping down (`forget`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None

    def record(self, value: Backlog) -> None:
        with self._lock:
            self._snapshot = _Snapshot(value, time.time())

    def forget(self) -> None:
        with self._lock:
            self._snapshot = None

    def collect(self):
        with self._lock:
            snapshot = self._snapshot
        if snapshot is None:
            return
        b = snapshot.backlog
        yield GaugeMetricFamily(
            "ledgerq_pending_transactions", "Transactions accepted (202) and not yet decided", value=b.pending
        )
        yield GaugeMetricFamily(
            "ledgerq_oldest_pending_age_seconds",
            "Age of the oldest pending transaction (0 when none)",
            value=b.oldest_pending_age_s,
        )
        lag = GaugeMetricFamily(
            "ledgerq_scheduler_lag_seconds",
            "How overdue the oldest due, unreleased work is (0 when none)",
            labels=["kind"],
        )
        lag.add_metric(["scheduled_transfer"], b.transfer_lag_s)
        lag.add_metric(["standing_order"], b.standing_order_lag_s)
        yield lag
        batches = GaugeMetricFamily(
            "ledgerq_batches_in_progress", "Unfinished batches by status", labels=["status"]
        )
        for status, count in b.batches_in_progress.items():
            batches.add_metric([status], count)
        yield batches
        yield GaugeMetricFamily(
            "ledgerq_batch_oldest_idle_seconds",
            "Time since the least recently progressed unfinished batch moved (0 when none)",
            value=b.oldest_batch_idle_s,
        )
        yield GaugeMetricFamily(
            "ledgerq_backlog_refreshed_timestamp_seconds",
            "When the leader last measured the backlog (Unix time)",
            value=snapshot.taken_at,
        )


BACKLOG = BacklogCollector()
REGISTRY.register(BACKLOG)


def refresh_queue_gauges() -> None:
    """The leader's gauge tick: Redis queue sizes, then the database backlog. Either
    source being down keeps its last values and is tried again next tick."""
    from workers import broker
    from workers.queues import queue_stats

    try:
        stats = queue_stats(broker)
    except Exception as exc:  # noqa: BLE001 - Redis down: keep the last values, try again
        log.warning("scheduler.queue_gauges_failed", error=str(exc))
    else:
        for queue in stats:
            QUEUE_DEPTH.labels(queue.name).set(queue.depth)
            QUEUE_IN_FLIGHT.labels(queue.name).set(queue.in_flight)
            QUEUE_DELAYED.labels(queue.name).set(queue.delayed)
            QUEUE_DEAD_LETTERS.labels(queue.name).set(queue.dead_letters)
    refresh_backlog()


def refresh_backlog() -> None:
    from db.session import unit_of_work

    try:
        with unit_of_work() as uow:
            BACKLOG.record(backlog(uow.session))
    except Exception as exc:  # noqa: BLE001 - database down: keep the last values
        log.warning("scheduler.backlog_gauges_failed", error=str(exc))


def forget_gauges() -> None:
    """Stepping down: only the leader's numbers are exported."""
    for gauge in _QUEUE_GAUGES:
        gauge.clear()
    BACKLOG.forget()


def serve(port: int, host: str) -> None:
    """Start the /metrics endpoint on host:port (the stack's WEB_HOST; port 0 disables it),
    in a daemon thread.

    A port already in use is logged, not fatal: releasing due transfers matters more
    than exporting gauges, and a crash loop would stop both."""
    if not port:
        return
    try:
        server = make_server(SCHEDULER, get_settings(), host, port)
    except OSError as exc:
        log.error("scheduler.metrics_unavailable", port=port, error=str(exc))
        return
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("scheduler.metrics_listening", port=port)
