"""Recurrences: APScheduler's triggers with crontab's conventions, and the missed-run policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from db.schedules.recurrence import Recurrence, RecurrenceError, plan_due_runs, to_apscheduler_crontab

T0 = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday


def test_crontab_day_zero_and_seven_mean_sunday_not_monday():
    for expr in ("0 9 * * 0", "0 9 * * 7", "0 9 * * sun"):
        fire = Recurrence(start_at=T0, cron=expr).first_after(T0)
        assert fire == datetime(2026, 1, 4, 9, tzinfo=UTC)
        assert fire.strftime("%A") == "Sunday"


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("1-5", "mon,tue,wed,thu,fri"),
        ("5-7", "sun,fri,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("1,3", "mon,wed"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
    ],
)
def test_day_of_week_field_is_translated_to_names(field, names):
    assert to_apscheduler_crontab(f"0 9 * * {field}") == f"0 9 * * {names}"


@pytest.mark.parametrize(
    ("expr", "field"),
    [
        ("0 9 * *", "cron"),  # 4 fields
        ("0 9 1 * 1", "cron"),  # both day fields restricted: crontab ORs, APScheduler ANDs
        ("61 9 * * *", "cron"),
        ("0 9 * * 8", "cron"),
        ("0 9 * * 5-1", "cron"),
    ],
)
def test_invalid_cron_is_rejected_with_the_field(expr, field):
    with pytest.raises(RecurrenceError) as error:
        Recurrence(start_at=T0, cron=expr)
    assert error.value.field == field


def test_unknown_time_zone_is_rejected():
    with pytest.raises(RecurrenceError) as error:
        Recurrence(start_at=T0, cron="0 9 * * *", timezone="Mars/Olympus")
    assert error.value.field == "timezone"


def test_cron_runs_at_local_wall_clock_time_across_dst():
    berlin = Recurrence(start_at=T0, cron="0 9 * * *", timezone="Europe/Berlin")
    assert berlin.first_after(datetime(2026, 3, 28, 12, tzinfo=UTC)) == datetime(2026, 3, 29, 7, tzinfo=UTC)
    assert berlin.first_after(datetime(2026, 3, 27, 12, tzinfo=UTC)) == datetime(2026, 3, 28, 8, tzinfo=UTC)


def test_a_wall_clock_time_repeated_when_clocks_go_back_runs_once():
    daily = Recurrence(start_at=T0, cron="30 2 * * *", timezone="Europe/Berlin")
    runs, cursor = [], datetime(2026, 10, 24, 12, tzinfo=UTC)
    for _ in range(2):
        cursor = daily.first_after(cursor)
        runs.append(cursor)
    # 02:30 happens at 00:30 and 01:30 UTC on 2026-10-25; only the first is a run.
    assert runs == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]


def test_interval_is_anchored_on_start_and_exact_to_the_second():
    every_minute = Recurrence(start_at=T0, interval_seconds=60)
    assert every_minute.first_at_or_after(T0) == T0
    assert every_minute.first_after(T0) == T0 + timedelta(minutes=1)
    assert every_minute.first_after(T0 + timedelta(seconds=59, microseconds=999_999)) == T0 + timedelta(
        minutes=1
    )
    assert every_minute.first_at_or_after(T0 - timedelta(days=1)) == T0  # never before start_at


def test_end_at_is_the_last_possible_run():
    bounded = Recurrence(start_at=T0, interval_seconds=60, end_at=T0 + timedelta(minutes=2))
    assert bounded.first_after(T0 + timedelta(minutes=1)) == T0 + timedelta(minutes=2)
    assert bounded.first_after(T0 + timedelta(minutes=2)) is None


def test_one_due_run_is_simply_run():
    every_minute = Recurrence(start_at=T0, interval_seconds=60)
    plan = plan_due_runs(every_minute, T0, T0 + timedelta(seconds=1), policy="run_once", grace=timedelta(0))
    assert (plan.run_at, plan.due_count, plan.skipped) == (T0, 1, 0)
    assert plan.next_run_at == T0 + timedelta(minutes=1)


def test_missed_runs_are_coalesced_into_one_for_the_latest_run_time():
    every_minute = Recurrence(start_at=T0, interval_seconds=60)
    now = T0 + timedelta(minutes=10, seconds=30)
    plan = plan_due_runs(every_minute, T0, now, policy="run_once", grace=timedelta(minutes=5))
    assert plan.run_at == T0 + timedelta(minutes=10)
    assert (plan.due_count, plan.skipped) == (11, 10)
    assert plan.next_run_at == T0 + timedelta(minutes=11)


def test_skip_policy_runs_only_a_run_within_grace():
    every_hour = Recurrence(start_at=T0, interval_seconds=3600)
    late = plan_due_runs(
        every_hour, T0, T0 + timedelta(hours=5, minutes=30), policy="skip", grace=timedelta(minutes=5)
    )
    assert late.run_at is None and late.skipped == 6 and late.next_run_at == T0 + timedelta(hours=6)
    fresh = plan_due_runs(
        every_hour, T0, T0 + timedelta(hours=5, minutes=1), policy="skip", grace=timedelta(minutes=5)
    )
    assert fresh.run_at == T0 + timedelta(hours=5) and fresh.skipped == 5


def test_a_very_long_outage_is_still_one_run_and_fast():
    every_minute = Recurrence(start_at=T0, interval_seconds=60)
    now = T0 + timedelta(days=365)
    plan = plan_due_runs(every_minute, T0, now, policy="run_once", grace=timedelta(0))
    assert plan.run_at == now  # the latest run time, found without walking 525,600 of them
    assert plan.next_run_at == now + timedelta(minutes=1)
    monthly = Recurrence(start_at=T0, cron="0 9 1 * *", timezone="Europe/Berlin")
    now = datetime(2036, 5, 20, tzinfo=UTC)
    plan = plan_due_runs(monthly, monthly.first_at_or_after(T0), now, policy="run_once", grace=timedelta(0))
    assert plan.run_at == datetime(2036, 5, 1, 7, tzinfo=UTC)
    assert plan.next_run_at == datetime(2036, 6, 1, 7, tzinfo=UTC)


def test_cron_on_day_31_skips_the_months_without_one_as_documented():
    # deployment/SCHEDULER.md: like crontab, "0 9 31 * *" runs only in 31-day months;
    # "the last day of the month" is not expressible (no `L`), use day 28 or two schedules.
    monthly = Recurrence(start_at=datetime(2026, 1, 1, tzinfo=UTC), cron="0 9 31 * *")
    jan = monthly.first_after(datetime(2026, 1, 1, tzinfo=UTC))
    after_jan = monthly.first_after(jan)
    assert (jan, after_jan) == (datetime(2026, 1, 31, 9, tzinfo=UTC), datetime(2026, 3, 31, 9, tzinfo=UTC))
