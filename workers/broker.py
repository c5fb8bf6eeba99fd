"""build_broker(settings): the Redis broker with every Dramatiq default that matters for
money set deliberately, and one commented middleware list."""

from __future__ import annotations

import functools

import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from db.core.config import Settings
from workers.middleware import DeadLetterRecorder, RequestContext, TraceContext, should_retry


def build_broker(settings: Settings) -> RedisBroker:
    middleware = [
        # Messages carry no expiry of their own; AgeLimit only acts on actors that set
        # max_age, and ours do not (a late transfer is still owed to the client).
        AgeLimit(),
        # Short default; actors that need more say so (see workers/transactions.py).
        TimeLimit(time_limit=settings.apply_time_limit_ms),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        # Dramatiq runs `after_*` hooks in *reverse* list order, so placing this before
        # Retries means it sees each message after Retries has decided its fate: it
        # marks the rows of messages Retries failed as `dead_lettered` in PostgreSQL,
        # so nothing depends on Redis remembering.
        DeadLetterRecorder(),
        # Bounded retries (~1 h) instead of Dramatiq's 20 retries backing off to 7 days.
        # Only transient database errors are retried: `retry_when` refuses the rest,
        # which sends them straight to the dead-letter queue.
        Retries(
            max_retries=settings.worker_max_retries,
            min_backoff=settings.worker_min_backoff_ms,
            max_backoff=settings.worker_max_backoff_ms,
            retry_when=functools.partial(should_retry, max_retries=settings.worker_max_retries),
        ),
        CurrentMessage(),
        # Binds the API's request id into the worker's log lines.
        RequestContext(),
        # OpenTelemetry: the sender's trace continues in the worker (no-op while off).
        TraceContext(),
    ]
    if settings.worker_metrics_enabled and settings.worker_metrics_port:
        # Imported only in worker processes: it needs Dramatiq's process-boot hooks.
        from workers.metrics import WorkerMetrics

        middleware.append(WorkerMetrics())
    # The client is built here, not from `url=`: RedisBroker would build its pool from
    # the URL alone and silently drop the timeouts. Fail fast while Redis is down
    # instead of hanging an API request.
    client = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
    )
    return RedisBroker(
        client=client,
        middleware=middleware,
        namespace=settings.redis_namespace,
        heartbeat_timeout=settings.broker_heartbeat_timeout_ms,
        maintenance_chance=settings.broker_maintenance_chance,
        dead_message_ttl=settings.broker_dead_message_ttl_ms,
    )
