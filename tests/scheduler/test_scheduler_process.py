"""The scheduler process: one leader through a PostgreSQL advisory lock, and, even when
two schedulers tick at once, every due item released exactly once (the claims, not the
lock, guarantee that). Real APScheduler, real Redis broker, real worker."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import text

from db.schedules import service as schedules_service
from db.schedules.service import StandingOrder
from db.session import get_engine, unit_of_work
from tests.fixtures.http import transfer
from tests.fixtures.ledger import audit_actions, entry_count, wait_final
from tests.fixtures.scheduling import iso, later, runs_of, scheduler_process, settings, wait_until

FAST = {"scheduler_tick_s": 0.25, "scheduler_leader_retry_s": 0.1}


class AlwaysLeader:
    """Pretend every instance won the election: the worst case for double release."""

    held = True

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


def _standing_order(make, interval_seconds=1, **fields):
    owner = make.user()
    source, target = make.account(owner, balance="1000.00"), make.account(make.user())
    with unit_of_work() as uow:
        schedule = schedules_service.create(
            uow.session,
            owner.principal,
            StandingOrder(
                from_account_id=source,
                to_account_id=target,
                amount="1.00",
                currency="USD",
                interval_seconds=interval_seconds,
                **fields,
            ),
            settings=settings(schedule_min_interval_s=1),
        )
    return schedule.id


def _assert_runs_account_for_every_run_time(schedule_id, interval_seconds=1):
    """No run time twice, none skipped silently: each gap between runs is covered by the
    later run's `covers_runs` (the coalesced missed runs)."""
    runs = runs_of(schedule_id)
    times = [run.scheduled_run_at for run in runs]
    assert len(times) == len(set(times))
    for earlier, run in zip(runs, runs[1:], strict=False):
        gap = (run.scheduled_run_at - earlier.scheduled_run_at) / timedelta(seconds=interval_seconds)
        assert run.metadata_["covers_runs"] == gap, (earlier.scheduled_run_at, run.scheduled_run_at)
    return runs


def test_only_one_scheduler_leads_and_a_standby_takes_over(make):
    with scheduler_process(settings(**FAST)) as first:
        assert wait_until(lambda: first.is_leader, timeout=5)
        with scheduler_process(settings(**FAST)) as second:
            time.sleep(0.5)
            assert first.is_leader and not second.is_leader
            first.stop()  # the leader goes away (releases its session lock)
            assert wait_until(lambda: second.is_leader, timeout=5)
            assert not first.is_leader


def test_a_leader_that_loses_its_database_session_stands_down(make):
    with scheduler_process(settings(**FAST)) as first, scheduler_process(settings(**FAST)) as second:
        assert wait_until(lambda: first.is_leader or second.is_leader, timeout=5)
        leader, standby = (first, second) if first.is_leader else (second, first)
        with get_engine().begin() as connection:  # the leader's connection dies
            killed = connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).all()
        assert len(killed) == 1
        assert wait_until(lambda: standby.is_leader, timeout=5)
        assert wait_until(lambda: not leader.is_leader, timeout=5)


def test_two_schedulers_release_each_due_item_exactly_once(client, make, worker):
    alice = make.user()
    a, b = make.account(alice, balance="1000.00"), make.account(make.user())
    # Far enough ahead that all 30 are recorded `scheduled` even on a loaded machine.
    due = iso(later(seconds=4))
    accepted = [transfer(client, alice, a, b, scheduled_for=due).json for _ in range(30)]
    assert {tx["status"] for tx in accepted} == {"scheduled"}
    ids = [tx["id"] for tx in accepted]
    orders = [_standing_order(make) for _ in range(3)]

    # Both instances tick (no election): the claims alone must prevent doubles.
    with (
        scheduler_process(settings(**FAST), leader=AlwaysLeader()) as first,
        scheduler_process(settings(**FAST), leader=AlwaysLeader()) as second,
    ):
        assert wait_until(lambda: first.is_leader and second.is_leader, timeout=5)
        assert set(wait_final(ids, timeout=20).values()) == {"completed"}
        time.sleep(2.5)  # a few standing-order run times, ticked by both schedulers
    for tx_id in ids:
        assert audit_actions(tx_id).count("transaction.released") == 1
        assert entry_count(tx_id) == 2
    for schedule_id in orders:
        runs = _assert_runs_account_for_every_run_time(schedule_id)
        assert len(runs) >= 2


def test_scheduler_restart_with_missed_runs(make, worker):
    schedule_id = _standing_order(make)  # every second from now, but no scheduler is running
    time.sleep(3.2)

    with scheduler_process(settings(**FAST)):
        assert wait_until(lambda: len(runs_of(schedule_id)) >= 2, timeout=10)
    first_run = runs_of(schedule_id)[0]
    assert first_run.metadata_["covers_runs"] >= 3, "the missed run times are covered by one run"

    time.sleep(0.5)  # ticks already in Redis are still processed by the worker
    count_before_outage = len(runs_of(schedule_id))
    time.sleep(2.0)  # down again
    with scheduler_process(settings(**FAST)):
        assert wait_until(lambda: len(runs_of(schedule_id)) >= count_before_outage + 2, timeout=10)
    runs = _assert_runs_account_for_every_run_time(schedule_id)
    assert runs[count_before_outage].metadata_["covers_runs"] >= 2
    wait_final([run.id for run in runs])
    assert all(entry_count(run.id) == 2 for run in runs_of(schedule_id) if run.status == "completed")
