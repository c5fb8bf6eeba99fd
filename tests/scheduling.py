"""Helpers for the scheduling tests (scheduled transfers, cancel, standing orders, the
scheduler process). Builders of users and accounts stay in tests/fixtures.py."""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from db.core.config import Settings, get_settings
from db.models import AuditLog, LedgerEntry, Schedule, Transaction
from db.session import unit_of_work


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def settings(**overrides) -> Settings:
    return get_settings().model_copy(update=overrides)


def transfer(client, user, source, target, amount="1.00", **extra):
    body = {"from_account_id": str(source), "to_account_id": str(target), "amount": amount, "currency": "USD"}
    body.update(extra)
    return client.post("/api/v1/transactions/transfer", json=body, headers=user.headers)


def entry_count(tx_id) -> int:
    with unit_of_work() as uow:
        return uow.session.scalar(  # type: ignore[return-value]  # COUNT(*) is never NULL
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.transaction_id == uuid.UUID(str(tx_id)))
        )


def audit_actions(entity_id) -> list[str]:
    with unit_of_work() as uow:
        return list(
            uow.session.scalars(
                select(AuditLog.action).where(AuditLog.entity_id == str(entity_id)).order_by(AuditLog.id)
            )
        )


def runs_of(schedule_id) -> list[Transaction]:
    with unit_of_work() as uow:
        rows = list(
            uow.session.scalars(
                select(Transaction)
                .where(Transaction.schedule_id == uuid.UUID(str(schedule_id)))
                .order_by(Transaction.scheduled_run_at)
            )
        )
        for row in rows:
            uow.session.expunge(row)
        return rows


def schedule_row(schedule_id) -> Schedule:
    with unit_of_work() as uow:
        row = uow.session.get(Schedule, uuid.UUID(str(schedule_id)))
        assert row is not None
        uow.session.expunge(row)
        return row


def set_schedule(schedule_id, **values) -> None:
    """Rewrite a schedule's run state, as if time had passed (tests only)."""
    with unit_of_work() as uow:
        row = uow.session.get(Schedule, uuid.UUID(str(schedule_id)))
        for key, value in values.items():
            setattr(row, key, value)


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@contextmanager
def scheduler_process(config: Settings | None = None, leader=None):
    """A real SchedulerProcess (APScheduler + leader lock, unless `leader` replaces the
    lock) in a thread of this process."""
    from scheduler.main import SchedulerProcess

    config = config or settings(scheduler_tick_s=0.25, scheduler_leader_retry_s=0.1)
    process = SchedulerProcess(config, leader=leader)
    thread = threading.Thread(target=process.run, daemon=True)
    thread.start()
    try:
        yield process
    finally:
        process.stop()
        thread.join(timeout=10)


def later(**delta) -> datetime:
    return now() + timedelta(**delta)
