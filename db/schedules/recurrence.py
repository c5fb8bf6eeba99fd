"""When a standing order runs: cron and fixed-interval recurrences, computed by
APScheduler 3.x's trigger classes, plus the missed-run policy. Pure functions: no
database, no clock (callers pass `now`, which is what lets tests control time).

Two APScheduler 3.x conventions differ from the crontab clients know, and both would
move money on the wrong day if passed through silently:
- day of week: APScheduler's `from_crontab` reads 0 as *Monday*; crontab reads 0 (and 7)
  as Sunday. `to_apscheduler_crontab` rewrites the field into day names.
- day of month *and* day of week restricted: crontab runs when *either* matches,
  APScheduler when *both* do. We refuse that combination (422) instead of guessing.
And one APScheduler behaviour would pay twice: when clocks go back, a wall-clock time
occurs twice and CronTrigger fires at both. A cron run happens once per wall-clock time
(the first occurrence); a time skipped when clocks go forward runs at the shifted time.
Fixed intervals are elapsed time and ignore wall clocks altogether.

Times are whole seconds (cron has minute resolution; intervals are whole seconds), so
"the first run strictly after t" is exact, with no float rounding at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: 0 = Sunday
# Counting missed runs walks the recurrence; past this many, the count is reported as a
# lower bound (a schedule that was off for years still runs once, and fast).
MAX_MISSED_COUNT = 10_000


class RecurrenceError(ValueError):
    """An invalid recurrence; `field` names the request field to blame."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RecurrenceError("timezone", f"unknown IANA time zone {name!r}") from None


def _day_number(token: str, expr: str) -> int:
    token = token.strip().lower()
    if token in _DAY_NAMES:
        return _DAY_NAMES.index(token)
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)
    raise RecurrenceError("cron", f"invalid day of week {token!r} in {expr!r}")


def _days_of_week(field: str, expr: str) -> str:
    """A crontab day-of-week field as APScheduler day names ("1-5" -> "mon,...,fri")."""
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
        except ValueError:
            raise RecurrenceError("cron", f"invalid step {step_text!r} in {expr!r}") from None
        if step < 1:
            raise RecurrenceError("cron", f"invalid step {step_text!r} in {expr!r}")
        if span == "*":
            low, high = 0, 6
        elif "-" in span:
            first, _, last = span.partition("-")
            low, high = _day_number(first, expr), _day_number(last, expr)
            if high < low:
                raise RecurrenceError("cron", f"day-of-week range {span!r} runs backwards in {expr!r}")
        else:
            low = _day_number(span, expr)
            high = 6 if step_text else low  # "1/2": from Monday, every second day
        days.update(day % 7 for day in range(low, high + 1, step))
    return ",".join(_DAY_NAMES[day] for day in sorted(days))


def to_apscheduler_crontab(expr: str) -> str:
    """Rewrite a 5-field crontab expression so APScheduler 3.x reads it as cron does."""
    fields = expr.split()
    if len(fields) != 5:
        raise RecurrenceError(
            "cron", f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    if fields[2] != "*" and fields[4] != "*":
        raise RecurrenceError(
            "cron",
            "restrict day of month or day of week, not both (crontab would run when either "
            "matches; say which you mean with two schedules)",
        )
    if fields[4] != "*":
        fields[4] = _days_of_week(fields[4], expr)
    return " ".join(fields)


def ceil_second(moment: datetime) -> datetime:
    floor = moment.replace(microsecond=0)
    return floor if floor == moment else floor + timedelta(seconds=1)


def _repeated_wall_time(moment: datetime, tz) -> bool:
    """True for the second occurrence of a local time that happens twice (clocks went back)."""
    local = moment.astimezone(tz)
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


@dataclass(frozen=True)
class Recurrence:
    """Exactly one of `cron` / `interval_seconds`. `start_at` anchors intervals and is
    the earliest run; `end_at` the latest (inclusive)."""

    start_at: datetime
    cron: str | None = None
    interval_seconds: int | None = None
    timezone: str = "UTC"
    end_at: datetime | None = None

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.interval_seconds is None):
            raise RecurrenceError("cron", "give exactly one of cron or interval_seconds")
        object.__setattr__(self, "start_at", self.start_at.astimezone(UTC).replace(microsecond=0))
        self._trigger()  # validate eagerly

    def _trigger(self) -> CronTrigger | IntervalTrigger:
        tz = zone(self.timezone)
        if self.cron is not None:
            try:
                return CronTrigger.from_crontab(to_apscheduler_crontab(self.cron), timezone=tz)
            except RecurrenceError:
                raise
            except ValueError as exc:
                raise RecurrenceError("cron", f"invalid cron expression {self.cron!r}: {exc}") from None
        return IntervalTrigger(seconds=self.interval_seconds or 0, start_date=self.start_at, timezone=tz)

    def first_at_or_after(self, moment: datetime) -> datetime | None:
        """The first run time >= `moment` (and >= start_at); None when the recurrence has ended."""
        probe = max(ceil_second(moment.astimezone(UTC)), self.start_at)
        trigger = self._trigger()
        while True:
            fire = trigger.get_next_fire_time(None, probe.astimezone(trigger.timezone))
            if fire is None:
                return None
            fire = fire.astimezone(UTC)
            if self.end_at is not None and fire > self.end_at:
                return None
            if self.cron is not None and _repeated_wall_time(fire, trigger.timezone):
                probe = fire + timedelta(seconds=1)
                continue
            return fire

    def first_after(self, moment: datetime) -> datetime | None:
        """The first run time strictly after `moment`."""
        return self.first_at_or_after(moment.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1))


def _latest_due(recurrence: Recurrence, known: datetime, now: datetime) -> datetime:
    """The latest run time <= now, given one (`known`) that is: bisection, so a years-long
    outage costs a few dozen trigger calls instead of a walk over every run time."""
    low, high = known, now
    while True:
        following = recurrence.first_after(low)
        if following is None or following > now:
            return low
        candidate = recurrence.first_at_or_after(low + (high - low) / 2)
        if candidate is not None and candidate <= now:
            low = candidate
        else:  # nothing in the upper half: the runs left are below its middle
            high, low = low + (high - low) / 2, following


@dataclass(frozen=True)
class RunPlan:
    """What one tick does with a due schedule."""

    run_at: datetime | None  # the run to create now (None: nothing to run)
    due_count: int  # run times that had come due (>= 1); capped at MAX_MISSED_COUNT
    skipped: int  # of those, how many are not run (coalesced into `run_at`, or skipped)
    next_run_at: datetime | None  # the first run time after `now` (None: ended)


def plan_due_runs(
    recurrence: Recurrence, next_run_at: datetime, now: datetime, *, policy: str, grace: timedelta
) -> RunPlan:
    """The missed-run policy. Every run time in [next_run_at, now] has come due; usually
    that is exactly one. More than one means nothing ran them (the scheduler was down):

    - `run_once` (default): one run, for the latest of them (APScheduler's coalescing);
      the others are reported as coalesced, never run as a burst.
    - `skip`: the latest runs only if it is still within `grace`; the rest are skipped.

    The next run is always the first run time after `now`, so a plan is never repeated.
    """
    due_count = 0
    latest: datetime | None = None
    cursor: datetime | None = next_run_at
    while cursor is not None and cursor <= now and due_count < MAX_MISSED_COUNT:
        due_count, latest = due_count + 1, cursor
        cursor = recurrence.first_after(cursor)
    if cursor is not None and cursor <= now:  # the count hit its cap: jump to the present
        latest = _latest_due(recurrence, cursor, now)
        cursor = recurrence.first_after(now)
    if latest is None:
        return RunPlan(None, 0, 0, cursor)
    if policy == "skip" and now - latest > grace:
        return RunPlan(None, due_count, due_count, cursor)
    return RunPlan(latest, due_count, due_count - 1, cursor)
