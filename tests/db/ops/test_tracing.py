"""OpenTelemetry: one trace from the HTTP request through the Redis message to the
worker's apply, its SQL and its commit; log lines carry the trace id; off by default.

The spans go to an in-memory exporter; the worker is the real Dramatiq worker (threads
in this process) on the real Redis broker, so the context really travels in the message.
"""

from __future__ import annotations

import io
import json
import sys

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from db.core.config import get_settings
from db.core.logs import configure_logging
from db.ops import tracing
from db.session import get_engine
from tests.fixtures.broker import drain
from tests.fixtures.http import API, accepted, app_with
from tests.fixtures.ledger import wait_final


def test_tracing_is_off_without_an_endpoint(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    if not tracing.enabled():  # (the traced test below may have run first in this process)
        assert tracing.configure_tracing("web") is False and not tracing.enabled()
    monkeypatch.setattr(tracing, "_enabled", False)
    assert tracing.current_ids() == {}
    with tracing.span("db.commit") as nothing:
        assert nothing is None


@pytest.fixture
def traced(monkeypatch):
    """Tracing on, into memory, for this test only (the global provider can be set once
    per process: later runs reuse it with a fresh exporter)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter = InMemorySpanExporter()
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        tracing.configure_tracing("web", exporter=exporter)
    else:
        monkeypatch.setattr(tracing, "_enabled", True)
        trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
    tracing.instrument_engine(get_engine())
    try:
        yield exporter
    finally:
        exporter.shutdown()
        tracing._enabled = False


def test_one_trace_from_request_to_commit_and_logs_carry_its_id(traced, make, worker, monkeypatch):
    app = app_with()  # made while tracing is on: instrumented
    alice = make.user()
    source, target = make.account(alice, balance="10.00"), make.account(alice)
    traced.clear()

    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    configure_logging(get_settings().model_copy(update={"log_format": "json"}))
    try:
        response = app.test_client().post(
            f"{API}/transactions/transfer",
            json={
                "from_account_id": str(source),
                "to_account_id": str(target),
                "amount": "2.50",
                "currency": "USD",
            },
            headers=alice.headers,
        )
        tx_id = accepted(response)
        assert wait_final([tx_id]) == {tx_id: "completed"}
        drain(worker)
    finally:
        monkeypatch.undo()
        configure_logging(get_settings())

    spans = traced.get_finished_spans()
    (request,) = [s for s in spans if s.kind == SpanKind.SERVER and "transfer" in s.name]
    (send,) = [s for s in spans if s.name == "send transactions.apply"]
    (process,) = [s for s in spans if s.name == "process transactions.apply"]
    trace_id = request.context.trace_id
    assert send.context.trace_id == trace_id and process.context.trace_id == trace_id
    assert process.parent.span_id == send.context.span_id and process.kind == SpanKind.CONSUMER

    # The request's own write runs off SQLAlchemy's execute path (DriverQuery): its span too.
    in_request = [s for s in spans if s.parent is not None and s.parent.span_id == request.context.span_id]
    assert any(
        str(s.attributes.get("db.query.text", "")).startswith("WITH new_transaction") for s in in_request
    ), [s.name for s in in_request]
    in_worker = [s for s in spans if s.context.trace_id == trace_id and s.start_time >= process.start_time]
    statements = [s for s in in_worker if s.attributes.get("db.system.name") == "postgresql"]
    assert any("UPDATE" in str(s.attributes.get("db.query.text", "")) for s in statements), [
        s.name for s in in_worker
    ]
    commits = [s for s in in_worker if s.name == "db.commit" and s.parent.span_id == process.context.span_id]
    assert commits, [s.name for s in in_worker]

    lines = [json.loads(line) for line in log.getvalue().splitlines() if line.startswith("{")]
    hex_id = format(trace_id, "032x")
    access = [
        line
        for line in lines
        if line.get("event") == "http.request" and line.get("path", "").endswith("/transfer")
    ]
    applied = [
        line for line in lines if line.get("event", "").startswith("transactions.") and line.get("actor")
    ]
    assert access and all(line["trace_id"] == hex_id for line in access), access
    assert applied and all(line["trace_id"] == hex_id for line in applied), applied
