"""Dramatiq workers. Importing this package builds the broker from settings, makes it
the global broker and declares every actor, which is what `dramatiq workers` (the
Procfile's `worker` process) and the API/scheduler (to send messages) both need."""

from __future__ import annotations

import dramatiq

from db.core.config import get_settings
from db.core.logs import configure_logging
from db.ops.tracing import configure_tracing
from workers.broker import build_broker

# `dramatiq workers` runs with --skip-logging: its own log lines go through ours.
configure_logging(get_settings())
# Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set; a no-op where the web or scheduler
# process configured it first (they import this package to send messages).
configure_tracing("worker")
broker = build_broker(get_settings())
dramatiq.set_broker(broker)

from workers import analytics, batches, holds, maintenance, schedules, transactions, webhooks  # noqa: E402  (actors need the broker first)

__all__ = ["analytics", "batches", "broker", "holds", "maintenance", "schedules", "transactions", "webhooks"]
