"""Standing-order runs with a controlled clock: one run per (schedule, run time) however
often or concurrently the tick runs, missed runs after a scheduler outage, end dates,
and the funds policy (failure streak -> auto-pause)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from db.core.config import get_settings
from db.schedules import service as schedules_service
from db.session import unit_of_work
from tests.fixtures.ledger import apply_now, audit_actions, balance
from tests.fixtures.scheduling import iso, runs_of, schedule_row, set_schedule
from workers.schedules import create_due_runs

T = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def standing_order(client, make):
    """Create a schedule through the API; returns (id, owner, source account, target account)."""

    def create(amount="10.00", funds="100.00", **fields):
        owner = make.user()
        source, target = make.account(owner, balance=funds), make.account(make.user())
        body = {
            "from_account_id": str(source),
            "to_account_id": str(target),
            "amount": amount,
            "currency": "USD",
            "start_at": iso(T),
        }
        body.update(fields or {"interval_seconds": 60})
        response = client.post("/api/v1/schedules", json=body, headers=owner.headers)
        assert response.status_code == 201, response.json
        return response.json["id"], owner, source, target

    return create


def _apply(ids):
    for tx_id in ids:
        apply_now(tx_id)


def test_each_run_time_runs_exactly_once(standing_order):
    schedule_id, _, source, target = standing_order()

    assert create_due_runs(T - timedelta(seconds=1)) == []
    first = create_due_runs(T)
    assert len(first) == 1
    assert create_due_runs(T) == []  # the same tick again (redelivered, or a second scheduler)
    assert create_due_runs(T + timedelta(seconds=59)) == []
    second = create_due_runs(T + timedelta(seconds=60))
    assert len(second) == 1
    _apply(first + second)

    runs = runs_of(schedule_id)
    assert [run.scheduled_run_at for run in runs] == [T, T + timedelta(minutes=1)]
    assert [run.status for run in runs] == ["completed", "completed"]
    assert balance(source) == "80.00" and balance(target) == "20.00"
    assert schedule_row(schedule_id).next_run_at == T + timedelta(minutes=2)


def test_the_database_refuses_a_second_copy_of_a_run(standing_order):
    schedule_id, *_ = standing_order()
    create_due_runs(T)
    # A scheduler that lost its update (or a bug) tries the same run time again:
    set_schedule(schedule_id, next_run_at=T)
    assert create_due_runs(T + timedelta(seconds=1)) == []  # ON CONFLICT: nothing new
    assert len(runs_of(schedule_id)) == 1
    assert schedule_row(schedule_id).next_run_at == T + timedelta(minutes=1)

    existing = runs_of(schedule_id)[0]
    with pytest.raises(IntegrityError), unit_of_work() as uow:
        uow.session.add(
            type(existing)(
                type="transfer",
                status="pending",
                from_account_id=existing.from_account_id,
                to_account_id=existing.to_account_id,
                amount_minor=1,
                currency="USD",
                created_by=existing.created_by,
                schedule_id=existing.schedule_id,
                scheduled_run_at=existing.scheduled_run_at,
            )
        )


def test_concurrent_claimers_create_each_run_once(standing_order):
    ids = [standing_order()[0] for _ in range(12)]
    created: list[uuid.UUID] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def claimer():
        start.wait()
        while True:
            with unit_of_work() as uow:
                batch = schedules_service.run_due(uow.session, now=T, settings=get_settings(), limit=2)
            if not batch:
                return
            with lock:
                created.extend(batch)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(created) == len(set(created)) == len(ids)
    for schedule_id in ids:
        assert [run.scheduled_run_at for run in runs_of(schedule_id)] == [T]


def test_scheduler_restart_after_missed_runs_runs_once_for_the_period(standing_order):
    schedule_id, _, source, _ = standing_order()
    _apply(create_due_runs(T))

    # The scheduler was down for ten and a half minutes: ten run times came and went.
    back = T + timedelta(minutes=10, seconds=30)
    caught_up = create_due_runs(back)
    assert len(caught_up) == 1, "one run for the missed period, never a burst"
    assert create_due_runs(back) == []  # and never twice
    _apply(caught_up)

    runs = runs_of(schedule_id)
    assert [run.scheduled_run_at for run in runs] == [T, T + timedelta(minutes=10)]
    assert runs[1].metadata_["covers_runs"] == 10
    assert "schedule.runs_missed" in audit_actions(schedule_id)
    assert schedule_row(schedule_id).next_run_at == T + timedelta(minutes=11)
    assert balance(source) == "80.00"


def test_skip_policy_skips_runs_older_than_the_grace_period(standing_order):
    schedule_id, *_ = standing_order(interval_seconds=3600, misfire_policy="skip")
    assert len(create_due_runs(T)) == 1
    back = T + timedelta(hours=5, minutes=10)  # the 5h run is 10 min old; grace is 5 min
    assert create_due_runs(back) == []
    assert [run.scheduled_run_at for run in runs_of(schedule_id)] == [T]
    assert schedule_row(schedule_id).next_run_at == T + timedelta(hours=6)
    assert "schedule.runs_missed" in audit_actions(schedule_id)  # skipped, but not silently


def test_end_at_ends_the_schedule(standing_order):
    schedule_id, *_ = standing_order(interval_seconds=60, end_at=iso(T + timedelta(minutes=2)))
    for minute in range(4):
        create_due_runs(T + timedelta(minutes=minute))
    assert [run.scheduled_run_at for run in runs_of(schedule_id)] == [
        T + timedelta(minutes=m) for m in range(3)
    ]
    row = schedule_row(schedule_id)
    assert row.status == "ended" and row.next_run_at is None


def test_a_paused_schedule_makes_no_runs_and_resume_does_not_catch_up(standing_order):
    schedule_id, owner, *_ = standing_order()
    with unit_of_work() as uow:
        schedules_service.pause(uow.session, owner.principal, uuid.UUID(schedule_id))
    assert create_due_runs(T + timedelta(minutes=10)) == []
    with unit_of_work() as uow:
        resumed = schedules_service.resume(
            uow.session, owner.principal, uuid.UUID(schedule_id), now=T + timedelta(minutes=10, seconds=30)
        )
        assert resumed.next_run_at == T + timedelta(minutes=11)
    assert create_due_runs(T + timedelta(minutes=10, seconds=45)) == []
    assert len(create_due_runs(T + timedelta(minutes=11))) == 1


def test_failed_runs_are_recorded_and_the_schedule_pauses_itself(standing_order):
    schedule_id, *_ = standing_order(amount="10.00", funds="5.00")
    limit = get_settings().schedule_max_consecutive_failures
    assert limit == 3
    for minute in range(limit):
        _apply(create_due_runs(T + timedelta(minutes=minute)))
        row = schedule_row(schedule_id)
        assert row.consecutive_failures == minute + 1
        assert row.status == ("active" if minute + 1 < limit else "paused")

    runs = runs_of(schedule_id)
    assert [(run.status, run.failure_code) for run in runs] == [("failed", "insufficient_funds")] * limit
    row = schedule_row(schedule_id)
    assert row.next_run_at is None
    assert "3 consecutive failed runs" in row.paused_reason and "insufficient_funds" in row.paused_reason
    assert "schedule.auto_paused" in audit_actions(schedule_id)
    assert create_due_runs(T + timedelta(minutes=10)) == []  # paused: no more runs


def test_a_completed_run_resets_the_failure_streak(standing_order, make):
    schedule_id, _, source, _ = standing_order(amount="10.00", funds="5.00")
    _apply(create_due_runs(T))
    _apply(create_due_runs(T + timedelta(minutes=1)))
    assert schedule_row(schedule_id).consecutive_failures == 2
    make.fund(source, "10.00")
    _apply(create_due_runs(T + timedelta(minutes=2)))
    assert schedule_row(schedule_id).consecutive_failures == 0
    _apply(create_due_runs(T + timedelta(minutes=3)))
    row = schedule_row(schedule_id)
    assert (row.status, row.consecutive_failures) == ("active", 1)
    assert [run.status for run in runs_of(schedule_id)] == ["failed", "failed", "completed", "failed"]
