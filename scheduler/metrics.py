"""The scheduler's Prometheus endpoint: queue gauges and leadership.

`ledgerq_queue_*` come from `workers.queues.queue_stats` (read-only Redis). They are
refreshed by the leader only; standbys export `ledgerq_scheduler_leader 0` and stale or
absent queue gauges, so alert on `max(...)` across instances.
"""

from __future__ import annotations

from prometheus_client import Gauge, start_http_server

from db.core.logs import get_logger

log = get_logger(__name__)

LEADER = Gauge("ledgerq_scheduler_leader", "1 while this scheduler instance is the active leader")
QUEUE_DEPTH = Gauge("ledgerq_queue_depth", "Messages waiting to be fetched", ["queue"])
QUEUE_IN_FLIGHT = Gauge(
    "ledgerq_queue_in_flight", "Messages fetched by a worker, not yet acknowledged", ["queue"]
)
QUEUE_DELAYED = Gauge("ledgerq_queue_delayed", "Delayed messages (retry backoff, delay=)", ["queue"])
QUEUE_DEAD_LETTERS = Gauge("ledgerq_queue_dead_letters", "Messages in the dead-letter queue", ["queue"])


def refresh_queue_gauges() -> None:
    from workers import broker
    from workers.queues import queue_stats

    try:
        stats = queue_stats(broker)
    except Exception as exc:  # noqa: BLE001 - Redis down: keep the last values, try again
        log.warning("scheduler.queue_gauges_failed", error=str(exc))
        return
    for queue in stats:
        QUEUE_DEPTH.labels(queue.name).set(queue.depth)
        QUEUE_IN_FLIGHT.labels(queue.name).set(queue.in_flight)
        QUEUE_DELAYED.labels(queue.name).set(queue.delayed)
        QUEUE_DEAD_LETTERS.labels(queue.name).set(queue.dead_letters)


def serve(port: int, host: str) -> None:
    """Start the /metrics endpoint on host:port (the stack's WEB_HOST; port 0 disables it).

    A port already in use is logged, not fatal: releasing due transfers matters more
    than exporting gauges, and a crash loop would stop both."""
    if not port:
        return
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.error("scheduler.metrics_unavailable", port=port, error=str(exc))
        return
    log.info("scheduler.metrics_listening", port=port)
