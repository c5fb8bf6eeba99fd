"""Project middleware: request context in logs, trace context across the queue, dead
letters recorded in the DB, and the retry policy's predicates (`should_retry`
broker-wide, `never_retry` for ticks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import structlog
from dramatiq.errors import ActorNotFound
from dramatiq.middleware import Middleware
from dramatiq.middleware.time_limit import TimeLimitExceeded
from sqlalchemy import exc as sa_exc

from db.core.logs import get_logger
from db.ops import tracing

log = get_logger(__name__)

# What an actor's `on_dead_letter` option holds: called with the message's kwargs and the
# reason when Retries fails the message; it records the dead letter on the row.
DeadLetterHook = Callable[[dict, str], None]


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: the database was unreachable, a lock or statement timed
    out, a serialization failure or deadlock, the attempt ran past its time limit (it
    committed nothing, and the row lock makes the retry safe), or anything a broken
    connection raised. Everything else is a bug or bad data and will fail the same way
    again."""
    if isinstance(exc, TimeLimitExceeded):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if (
        isinstance(exc, sa_exc.StatementError)
        and exc.orig is not None
        and _from_a_broken_connection(exc.orig)
    ):
        return True
    return _from_a_broken_connection(exc) or isinstance(
        exc,
        (
            sa_exc.OperationalError,
            sa_exc.InterfaceError,
            sa_exc.TimeoutError,
            sa_exc.DisconnectionError,
            ConnectionError,
        ),
    )


def _from_a_broken_connection(exc: BaseException) -> bool:
    """psycopg's own errors for a connection that is gone or still busy with the query an
    interrupted attempt left in flight ("can't change 'autocommit' now: connection in
    transaction status ACTIVE"): the connection, not the message, is at fault."""
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return True
    return isinstance(exc, psycopg.ProgrammingError) and "transaction status ACTIVE" in str(exc)


def should_retry(retries_so_far: int, exc: BaseException, *, max_retries: int) -> bool:
    """Retries' `retry_when`: transient errors up to the bound; anything else fails at
    once (and so lands in the dead-letter queue, recorded on the row)."""
    return is_transient(exc) and retries_so_far < max_retries


def never_retry(retries_so_far: int, exc: BaseException) -> bool:
    """The tick actors' `retry_when`: a failing tick is not retried, the next one comes
    in seconds. (With a broker-wide `retry_when`, Dramatiq ignores `max_retries`, so
    `max_retries=0` alone would not stop the retries.)"""
    return False


class RequestContext(Middleware):
    """Bind the originating request id (a message option) into structlog's context."""

    def before_process_message(self, broker, message):
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            request_id=message.options.get("request_id"),
            message_id=message.message_id,
            actor=message.actor_name,
        )

    def after_process_message(self, broker, message, *, result=None, exception=None):
        structlog.contextvars.clear_contextvars()

    after_skip_message = after_process_message


class TraceContext(Middleware):
    """OpenTelemetry across the queue (db/ops/tracing.py; nothing while tracing is off).

    Sending: a producer span, whose W3C trace context goes into the message as the
    option `trace_context`. Processing: the actor runs in a consumer span continuing that
    trace, so the HTTP request, the enqueue, the worker's apply, its SQL and its commit
    are one trace. Redeliveries and retries carry the same context: they join it too."""

    def __init__(self) -> None:
        self._spans: dict[str, tuple[Any, object]] = {}

    def before_enqueue(self, broker, message, delay):
        if not tracing.enabled():
            return
        from opentelemetry import propagate, trace

        tracer = trace.get_tracer(tracing.TRACER_NAME)
        with tracer.start_as_current_span(
            f"send {message.actor_name}",
            kind=trace.SpanKind.PRODUCER,
            attributes={"messaging.system": "dramatiq", "messaging.destination.name": message.queue_name},
        ):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
        message.options["trace_context"] = carrier

    def before_process_message(self, broker, message):
        if not tracing.enabled():
            return
        from opentelemetry import context, propagate, trace

        parent = propagate.extract(message.options.get("trace_context") or {})
        span = trace.get_tracer(tracing.TRACER_NAME).start_span(
            f"process {message.actor_name}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "dramatiq",
                "messaging.destination.name": message.queue_name,
                "messaging.message.id": message.message_id,
                "messaging.dramatiq.retries": message.options.get("retries", 0),
            },
        )
        token = context.attach(trace.set_span_in_context(span))
        self._spans[message.message_id] = (span, token)

    def after_process_message(self, broker, message, *, result=None, exception=None):
        active = self._spans.pop(message.message_id, None)
        if active is None:
            return
        from opentelemetry import context, trace

        span, token = active
        if exception is not None:
            span.record_exception(exception)
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exception).__name__))
        span.end()
        context.detach(token)

    after_skip_message = after_process_message


class DeadLetterRecorder(Middleware):
    """When Retries fails a message (retries exhausted or a permanent error), record it
    on the row synchronously. If that write fails too (database down), the row stays
    `pending` and the sweeper re-enqueues it once the database is back: nothing is lost,
    the transfer simply gets another chance.

    An actor declares its hook as an option, `@dramatiq.actor(on_dead_letter=fn)`, as
    Dramatiq's own middleware read theirs (`max_retries`, `time_limit`)."""

    @property
    def actor_options(self) -> set[str]:
        return {"on_dead_letter"}

    @staticmethod
    def _hook(broker, actor_name: str) -> DeadLetterHook | None:
        try:
            return broker.get_actor(actor_name).options.get("on_dead_letter")
        except ActorNotFound:  # a message for an actor this process does not declare
            return None

    def after_process_message(self, broker, message, *, result=None, exception=None):
        if not message.failed:
            return
        handler = self._hook(broker, message.actor_name)
        reason = f"{type(exception).__name__}: {exception}" if exception else "failed"
        log.error("message.dead_lettered", reason=reason[:500], retries=message.options.get("retries", 0))
        if handler is None:
            return
        try:
            handler(message.kwargs, reason)
        except Exception as exc:  # noqa: BLE001 - must not crash the worker thread
            log.error("message.dead_letter_record_failed", error=str(exc))
