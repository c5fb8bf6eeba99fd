"""structlog set-up: console lines in development, JSON in production.

Event names are dotted (`transactions.applied`) with keyword fields; the request id is
bound in contextvars by the API and by the worker middleware, so one grep follows a
transfer from HTTP to ledger.
"""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from db.core.config import Settings

_SECRET_KEYS = {"password", "token", "access_token", "refresh_token", "secret", "authorization"}


def _redact_secrets(_logger, _name, event_dict):
    # Defence in depth: a secret passed as a log field by mistake is never written.
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


def _add_trace_ids(_logger, _name, event_dict):
    # Inside a traced request or message: the ids that find this line's trace.
    from db.ops.tracing import current_ids

    for key, value in current_ids().items():
        event_dict.setdefault(key, value)
    return event_dict


def configure_logging(settings: Settings) -> None:
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "json" if settings.is_production or not sys.stderr.isatty() else "console"
    renderer: list[structlog.types.Processor] = (
        # An exception becomes a structured `exception` field (type, message, frames):
        # without it an error was logged as `"exc_info": true` and nothing else. Frames
        # without their local variables, which may hold passwords or tokens. The console
        # renderer prints tracebacks itself.
        [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(),
        ]
        if fmt == "json"
        else [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,  # which module (or gunicorn, dramatiq) said it
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
        _add_trace_ids,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # gunicorn's own lines ("Booting worker", "Worker timeout") in the same format as ours:
    # its loggers lose their handlers and propagate to the root (api/gunicorn_conf.py
    # keeps gunicorn from adding them back).
    for name in ("gunicorn.error", "gunicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Library chatter that would drown the ledger's own events.
    for noisy in ("urllib3", "apscheduler.executors.default", "werkzeug", "alembic", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str | None = None):
    return structlog.get_logger(name)
