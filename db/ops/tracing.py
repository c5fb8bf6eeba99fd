"""OpenTelemetry tracing, off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

One trace follows a transfer: the HTTP request's span (Flask instrumentation), the
`send` of its message, the worker's `process` span (parented through the trace context
the Dramatiq message carries: workers/middleware.py `TraceContext`), every SQL statement
in between (engine listeners) and each unit of work's commit. Log lines of a
traced request or message carry its `trace_id` and `span_id` (db/core/logs.py).

The exporter is OTLP over HTTP/protobuf, configured by the standard `OTEL_*` variables
(endpoint, headers, `OTEL_SERVICE_NAME`, sampler). Off, every hook here is a no-op: the
API's tracer is a non-recording one and nothing is instrumented.
"""

from __future__ import annotations

import os
import threading
import weakref
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import trace

_lock = threading.Lock()
_enabled = False
_instrumented: weakref.WeakSet = weakref.WeakSet()

TRACER_NAME = "ledgerq"


def wanted() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def enabled() -> bool:
    return _enabled


def configure_tracing(role: str, *, exporter: Any = None) -> bool:
    """Install the tracer provider for this process (`role`: web, worker, scheduler).

    `exporter` replaces OTLP (tests pass an in-memory one, exported synchronously). Does
    nothing, and returns False, when tracing is not wanted; idempotent otherwise."""
    global _enabled
    if exporter is None and not wanted():
        return False
    with _lock:
        if _enabled:
            return True
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        service = os.environ.get("OTEL_SERVICE_NAME") or f"ledgerq-{role}"
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _enabled = True
        return True


def instrument_app(app) -> None:
    """A server span per HTTP request (W3C `traceparent` from the client continues it)."""
    if _enabled:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor().instrument_app(app, excluded_urls="healthz,readyz,metrics")


def instrument_engine(engine) -> None:
    """A client span per SQL statement on this engine (the statement text only: its
    parameters, amounts and ids, stay out of the trace).

    Our own three listeners rather than opentelemetry-instrumentation-sqlalchemy: that
    one declares sqlalchemy < 2.1 and refuses 2.1 (and, forced, imports the asyncio
    extension, which needs greenlet). The listeners check `enabled()` on every call, so
    an engine made while tracing is on costs nothing once it is off again."""
    if not _enabled or engine in _instrumented:
        return
    from sqlalchemy import event

    database = engine.url.database

    def start(conn, cursor, statement, parameters, context, executemany):
        if _enabled and context is not None:
            context._ledgerq_span = trace.get_tracer(TRACER_NAME).start_span(
                **_statement_span_arguments(database, statement)
            )

    def end(conn, cursor, statement, parameters, context, executemany):
        span = getattr(context, "_ledgerq_span", None)
        if span is not None:
            span.end()

    def failed(exception_context):
        span = getattr(exception_context.execution_context, "_ledgerq_span", None)
        if span is not None:
            span.record_exception(exception_context.original_exception)
            span.set_status(trace.Status(trace.StatusCode.ERROR))
            span.end()

    event.listen(engine, "before_cursor_execute", start)
    event.listen(engine, "after_cursor_execute", end)
    event.listen(engine, "handle_error", failed)
    _instrumented.add(engine)


def _statement_span_arguments(database: str | None, statement: str) -> dict[str, Any]:
    verb = statement.split(None, 1)[0].upper() if statement.strip() else "SQL"
    return {
        "name": f"{verb} {database}",
        "kind": trace.SpanKind.CLIENT,
        "attributes": {"db.system.name": "postgresql", "db.namespace": database, "db.query.text": statement},
    }


def statement_span(database: str | None, statement: str) -> AbstractContextManager:
    """The span of one statement run off SQLAlchemy's execute path (db.core.sql
    DriverQuery), named and attributed as the engine listeners name theirs."""
    if not _enabled:
        return nullcontext()
    return trace.get_tracer(TRACER_NAME).start_as_current_span(
        **_statement_span_arguments(database, statement)
    )


def span(name: str, **attributes: Any) -> AbstractContextManager:
    """A child span of whatever is current, or nothing at all while tracing is off."""
    if not _enabled:
        return nullcontext()
    return trace.get_tracer(TRACER_NAME).start_as_current_span(name, attributes=attributes)


def current_ids() -> dict[str, str]:
    """`trace_id` / `span_id` of the current span (hex, as tracing backends show them)."""
    if not _enabled:
        return {}
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}
