"""Actors of the `webhooks` queue (run a pool of its own with `--queues webhooks`, so a
slow endpoint can never hold a transfer's worker).

- `webhooks.dispatch` (a scheduler tick): fan new events out to subscriptions, return
  lost leases, claim due deliveries within each endpoint's concurrency and circuit, and
  send one `webhooks.deliver` per claim.
- `webhooks.deliver`: one HTTP attempt (db/webhooks/delivery.py); on finishing it claims
  the same endpoint's next due deliveries, so a healthy endpoint drains at its own pace.
- `events.prune` (a scheduler tick, `maintenance` queue): events past the retention.

No Dramatiq retries: a failed attempt is rescheduled in the database with backoff and
jitter; a worker that dies mid-attempt leaves a lease that expires into a retry.
"""

from __future__ import annotations

import uuid

import dramatiq
from prometheus_client import Counter, Gauge, Histogram

from db.core.config import get_settings
from db.core.logs import get_logger
from db.events import feed
from db.session import unit_of_work
from db.webhooks import delivery, dispatch
from workers.maintenance import stale_tick

log = get_logger(__name__)

DELIVERIES = Counter(
    "ledgerq_webhook_deliveries_total",
    "Webhook attempts by outcome (delivered, retrying, failed)",
    ["outcome"],
)
ATTEMPT_SECONDS = Histogram(
    "ledgerq_webhook_attempt_seconds",
    "Duration of one webhook HTTP attempt",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OLDEST_UNDELIVERED = Gauge(
    "ledgerq_webhook_oldest_undelivered_seconds",
    "Age of the oldest event with a delivery still pending",
    multiprocess_mode="max",
)
CIRCUITS = Gauge(
    "ledgerq_webhook_circuits",
    "Webhook endpoints by circuit state (closed, open, half_open)",
    ["state"],
    multiprocess_mode="max",
)
CIRCUITS_OPENED = Counter("ledgerq_webhook_circuits_opened_total", "Times an endpoint's circuit opened")
EVENTS_PRUNED = Counter("ledgerq_events_pruned_total", "Events deleted after the retention period")

_settings = get_settings()
# One attempt is at most WEBHOOK_TIMEOUT_SECONDS; the rest is two short transactions.
_DELIVER_TIME_LIMIT_MS = int((_settings.webhook_timeout_s + 20) * 1000)


@dramatiq.actor(actor_name="webhooks.dispatch", queue_name="webhooks", max_retries=0)
def dispatch_tick() -> None:
    if not stale_tick():
        dispatch_once()


@dramatiq.actor(
    actor_name="webhooks.deliver", queue_name="webhooks", max_retries=0, time_limit=_DELIVER_TIME_LIMIT_MS
)
def deliver(delivery_id: str) -> None:
    deliver_once(uuid.UUID(delivery_id))


@dramatiq.actor(actor_name="events.prune", queue_name="maintenance", max_retries=0)
def prune_events() -> None:
    if not stale_tick():
        prune_once()


def dispatch_once() -> list[uuid.UUID]:
    """One dispatch round (what the tick does); the claimed delivery ids."""
    settings = get_settings()
    with unit_of_work() as uow:
        events, created = dispatch.fan_out(uow.session, settings)
    with unit_of_work() as uow:
        dispatch.release_expired_leases(uow.session)
        claimed = dispatch.claim_due(uow.session, settings)
        for delivery_id in claimed:
            uow.enqueue(deliver, delivery_id=str(delivery_id))
        OLDEST_UNDELIVERED.set(dispatch.oldest_undelivered_age_s(uow.session))
        for state, count in dispatch.circuit_counts(uow.session).items():
            CIRCUITS.labels(state).set(count)
    if events or claimed:
        log.info("webhooks.dispatched", events=events, deliveries=created, claimed=len(claimed))
    return claimed


def deliver_once(delivery_id: uuid.UUID) -> str:
    """Attempt one claimed delivery; its outcome (delivered, retrying, failed, skipped)."""
    settings = get_settings()
    with unit_of_work() as uow:
        request = delivery.prepare(uow.session, delivery_id, settings)
    if request is None:
        return "skipped"
    answer = delivery.send(request, settings)
    ATTEMPT_SECONDS.observe(answer.latency_ms / 1000)
    with unit_of_work() as uow:
        recorded = delivery.record(uow.session, delivery_id, answer, settings)
        for next_id in recorded.next_ids:
            uow.enqueue(deliver, delivery_id=str(next_id))
    if recorded.outcome != "skipped":
        DELIVERIES.labels(recorded.outcome).inc()
    if recorded.circuit_opened:
        CIRCUITS_OPENED.inc()
        log.warning("webhooks.circuit_opened", delivery_id=str(delivery_id), url=request.url)
    log.info(
        "webhooks.attempted",
        delivery_id=str(delivery_id),
        outcome=recorded.outcome,
        status_code=answer.status_code,
        ms=answer.latency_ms,
        error=answer.error,
    )
    return recorded.outcome


def prune_once() -> int:
    settings = get_settings()
    total = 0
    while True:
        with unit_of_work() as uow:
            deleted = feed.prune(uow.session, retention_days=settings.event_retention_days)
        total += deleted
        if deleted == 0:
            break
    if total:
        EVENTS_PRUNED.inc(total)
        log.info("events.pruned", count=total)
    return total
