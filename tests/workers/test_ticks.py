"""Tick actors (the scheduler's periodic messages) are never retried: the next tick comes
in seconds and does the same work, so a failing tick runs exactly once, even on an error
the broker-wide policy would retry (a transient database error). Ticks return None: an
idle stack must not log "returned a value that is not None" for every tick."""

from __future__ import annotations

import logging

import pytest
from dramatiq.errors import QueueJoinTimeout
from sqlalchemy import exc as sa_exc

from workers import analytics, batches, broker, holds, maintenance, schedules

TICKS = [
    (analytics, analytics.fold_analytics),
    (holds, holds.expire_holds),
    (maintenance, maintenance.sweep_pending),
    (maintenance, maintenance.release_scheduled),
    (schedules, schedules.run_due),
    (batches, batches.release_due),
    (batches, batches.sweep_stalled),
]


@pytest.mark.parametrize(("module", "tick"), TICKS, ids=[tick.actor_name for _, tick in TICKS])
def test_a_failing_tick_runs_exactly_once(module, tick, monkeypatch, worker):
    runs = []

    def database_down():
        runs.append(1)
        # Transient: the broker-wide retry_when retries this for every other actor.
        raise sa_exc.OperationalError("SELECT 1", {}, ConnectionError("database down"))

    monkeypatch.setattr(module, "unit_of_work", database_down)
    tick.send()

    # A retried tick sits in the delay queue (first backoff about a second): join times out.
    try:
        broker.join(tick.queue_name, timeout=8_000)
    except QueueJoinTimeout:
        pass
    worker.join()
    assert len(runs) == 1, f"{tick.actor_name} ran {len(runs)} times"


@pytest.mark.parametrize("tick", [tick for _, tick in TICKS], ids=[tick.actor_name for _, tick in TICKS])
def test_an_idle_tick_returns_none(tick, caplog):
    with caplog.at_level(logging.WARNING):
        assert tick() is None
    assert "not None" not in caplog.text
