"""Standing orders: a transfer template plus a recurrence. Each run is one ordinary
transaction with `schedule_id` and `scheduled_run_at`, unique per (schedule, run time).

Who does what:
- the API creates, pauses, resumes and deletes schedules (this module, under the
  schedule's row lock);
- the `schedules.run_due` actor, on every scheduler tick, calls `run_due`: it claims
  due schedules with FOR UPDATE SKIP LOCKED, creates the run and advances `next_run_at`
  in the same DB transaction, so a run is created once even with two schedulers, a
  redelivered tick or a crash half-way (and the unique key backs that up);
- the worker, when it decides a run's transaction, calls `record_run_outcome` inside its
  posting transaction: the failure streak and the auto-pause are exact.

Missed runs (the scheduler was down) follow the schedule's `misfire_policy`; see
`db.schedules.recurrence.plan_due_runs`. Paused time is not "missed": resume continues with the
next run after the resume, it does not catch up.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from db.accounts import repository as accounts_repo
from db.accounts.service import visible_account
from db.audit import repository as audit
from db.core.config import Settings, get_settings
from db.core.errors import Conflict, NotFound, ValidationFailed
from db.core.logs import get_logger
from db.core.principal import Principal
from db.events import outbox
from db.models import Schedule
from db.pagination import KeysetPage
from db.schedules import repository as schedules_repo
from db.schedules.recurrence import Recurrence, RecurrenceError, ceil_second, plan_due_runs
from db.transactions import views as transaction_views
from db.transactions.service import MoneyMovement, check_horizon, check_request

log = get_logger(__name__)


@dataclass(frozen=True)
class StandingOrder:
    """A validated client request for a schedule, before it becomes a row."""

    from_account_id: uuid.UUID
    to_account_id: uuid.UUID
    amount: str
    currency: str
    cron: str | None = None
    interval_seconds: int | None = None
    timezone: str = "UTC"
    start_at: datetime | None = None
    end_at: datetime | None = None
    reference: str | None = None
    misfire_policy: str = "run_once"


def recurrence_of(schedule: Schedule) -> Recurrence:
    return Recurrence(
        start_at=schedule.start_at,
        cron=schedule.cron,
        interval_seconds=schedule.interval_seconds,
        timezone=schedule.timezone,
        end_at=schedule.end_at,
    )


def create(
    session: Session,
    principal: Principal,
    request: StandingOrder,
    *,
    settings: Settings,
    now: datetime | None = None,
) -> Schedule:
    """Validate the template like a transfer (ownership, accounts, currency, amount) and
    the recurrence, then store the schedule with its first run time.

    Without `start_at` the first run is at creation (cron: the first matching time from
    now); a `start_at` in the past anchors an interval but never backfills runs."""
    now = now or datetime.now(UTC)
    amount_minor, source, target = check_request(
        session,
        principal,
        MoneyMovement(
            type="transfer",
            amount=request.amount,
            currency=request.currency,
            from_account_id=request.from_account_id,
            to_account_id=request.to_account_id,
            reference=request.reference,
        ),
        settings=settings,
    )
    if request.interval_seconds is not None and request.interval_seconds < settings.schedule_min_interval_s:
        raise ValidationFailed.field(
            "interval_seconds", f"must be at least {settings.schedule_min_interval_s} seconds"
        )
    start_at = request.start_at or now
    check_horizon(start_at, now, settings, "start_at")
    if request.end_at is not None and request.end_at <= start_at:
        raise ValidationFailed.field("end_at", "must be after start_at")
    try:
        recurrence = Recurrence(
            # An implicit start is rounded up, so "every N s from now" runs now, not in N s.
            start_at=start_at if request.start_at else ceil_second(now),
            cron=request.cron,
            interval_seconds=request.interval_seconds,
            timezone=request.timezone,
            end_at=request.end_at,
        )
        first_run = recurrence.first_at_or_after(max(recurrence.start_at, now))
    except RecurrenceError as exc:
        raise ValidationFailed.field(exc.field, str(exc)) from None
    if first_run is None:
        raise ValidationFailed.field("end_at", "the schedule would never run before end_at")

    schedule = Schedule(
        created_by=principal.id,
        from_account_id=source.id,
        to_account_id=target.id,
        amount_minor=amount_minor,
        currency=request.currency,
        reference=request.reference,
        cron=request.cron,
        interval_seconds=request.interval_seconds,
        timezone=request.timezone,
        start_at=recurrence.start_at,
        end_at=request.end_at,
        misfire_policy=request.misfire_policy,
        status="active",
        next_run_at=first_run,
    )
    session.add(schedule)
    session.flush()
    _audit(session, schedule, "schedule.created", principal, {"next_run_at": first_run.isoformat()})
    session.flush()
    return schedule


def list_visible(
    session: Session,
    principal: Principal,
    page: KeysetPage,
    *,
    status: str | None,
    account_id: uuid.UUID | None,
) -> dict[str, Any]:
    """A page of the schedules the principal may see, newest first: customers see the ones
    they created or that draw on their accounts; finance/admin see all."""
    if account_id:
        visible_account(session, principal, account_id)
    rows = schedules_repo.list_visible(
        session,
        owner_id=None if principal.sees_everything else principal.id,
        status=status,
        account_id=account_id,
        before_seq=page.after,
        limit=page.limit,
    )
    return page.of(rows)


def runs(session: Session, principal: Principal, schedule_id: uuid.UUID, page: KeysetPage) -> dict[str, Any]:
    """A page of the runs (ordinary transactions, as views) of a visible schedule."""
    schedule = visible_schedule(session, principal, schedule_id)
    rows = schedules_repo.runs_of(session, schedule.id, before_seq=page.after, limit=page.limit)
    return page.of(rows, lambda txs: transaction_views.views(session, principal, txs))


def visible_schedule(session: Session, principal: Principal, schedule_id: uuid.UUID) -> Schedule:
    """The schedule if the principal may see it, else 404: finance/admin see all;
    customers the ones they created or that draw on their accounts."""
    schedule = schedules_repo.get(session, schedule_id)
    if schedule is None or not _may_see(session, principal, schedule):
        raise NotFound("schedule not found")
    return schedule


def _may_see(session: Session, principal: Principal, schedule: Schedule) -> bool:
    if principal.sees_everything or schedule.created_by == principal.id:
        return True
    source = accounts_repo.get(session, schedule.from_account_id)
    return source is not None and source.owner_id == principal.id


def _locked(session: Session, principal: Principal, schedule_id: uuid.UUID) -> Schedule:
    """The schedule locked for a change by someone who may manage it: finance and admin,
    or the customer who created it. A customer sees the standing orders finance set up on
    their account but cannot pause, resume or delete them (404, like a stranger)."""
    seen = visible_schedule(session, principal, schedule_id)
    if not (principal.sees_everything or seen.created_by == principal.id):
        raise NotFound("schedule not found")
    locked = schedules_repo.get_for_update(session, schedule_id)
    assert locked is not None  # schedules are never deleted, only marked
    return locked


def pause(session: Session, principal: Principal, schedule_id: uuid.UUID) -> Schedule:
    """Stop creating runs (runs already created are ordinary transactions: cancel those
    separately). Pausing a paused schedule is a no-op; an ended or deleted one is 409."""
    schedule = _locked(session, principal, schedule_id)
    if schedule.status == "paused":
        return schedule
    _require_status(schedule, "active", "paused")
    _set_paused(schedule, f"paused by {principal.username or principal.id}")
    _audit(session, schedule, "schedule.paused", principal, {})
    session.flush()
    return schedule


def pause_all_created_by(
    session: Session, principal: Principal, user_id: uuid.UUID, *, reason: str
) -> list[uuid.UUID]:
    """Pause the user's active standing orders (a deactivated user's), each audited with
    `reason`; resuming them is an explicit decision for finance or admin."""
    paused = []
    for schedule in schedules_repo.active_created_by(session, user_id):
        _set_paused(schedule, reason)
        _audit(session, schedule, "schedule.paused", principal, {"reason": reason})
        paused.append(schedule.id)
    session.flush()
    return paused


def resume(
    session: Session, principal: Principal, schedule_id: uuid.UUID, *, now: datetime | None = None
) -> Schedule:
    """Continue with the first run time after now: the paused period is not caught up.
    Resets the failure streak. Resuming an active schedule is a no-op."""
    now = now or datetime.now(UTC)
    schedule = _locked(session, principal, schedule_id)
    if schedule.status == "active":
        return schedule
    _require_status(schedule, "paused", "resumed")
    recurrence = recurrence_of(schedule)
    next_run = recurrence.first_at_or_after(now)
    if next_run is not None and schedule.last_run_at is not None and next_run <= schedule.last_run_at:
        next_run = recurrence.first_after(schedule.last_run_at)  # never the run already made
    schedule.paused_reason = None
    schedule.consecutive_failures = 0
    if next_run is None:
        schedule.status, schedule.next_run_at = "ended", None
    else:
        schedule.status, schedule.next_run_at = "active", next_run
    _audit(session, schedule, "schedule.resumed", principal, {"status": schedule.status})
    session.flush()
    return schedule


def delete(session: Session, principal: Principal, schedule_id: uuid.UUID) -> Schedule:
    """Stop the schedule for good. The row stays (its runs reference it; history is never
    deleted) with status `deleted`; deleting twice is a no-op."""
    schedule = _locked(session, principal, schedule_id)
    if schedule.status == "deleted":
        return schedule
    schedule.status, schedule.next_run_at = "deleted", None
    _audit(session, schedule, "schedule.deleted", principal, {})
    session.flush()
    return schedule


def _require_status(schedule: Schedule, expected: str, verb: str) -> None:
    if schedule.status != expected:
        raise Conflict(
            f"A schedule that is {schedule.status} cannot be {verb}.",
            {"schedule_id": str(schedule.id), "status": schedule.status},
        )


def _set_paused(schedule: Schedule, reason: str) -> None:
    schedule.status, schedule.next_run_at, schedule.paused_reason = "paused", None, reason


def run_due(session: Session, *, now: datetime, settings: Settings, limit: int) -> list[uuid.UUID]:
    """Create the runs that have come due by `now`; return the new transaction ids (the
    caller enqueues them after commit). Safe to call concurrently and repeatedly."""
    created: list[uuid.UUID] = []
    grace = timedelta(seconds=settings.schedule_misfire_grace_s)
    for schedule in schedules_repo.claim_due(session, now=now, limit=limit):
        assert schedule.next_run_at is not None  # active, by the CHECK constraint
        try:
            plan = plan_due_runs(
                recurrence_of(schedule),
                schedule.next_run_at,
                now,
                policy=schedule.misfire_policy,
                grace=grace,
            )
        except RecurrenceError as exc:  # e.g. a time zone the host no longer knows
            _set_paused(schedule, f"paused automatically: {exc}")
            _audit(session, schedule, "schedule.auto_paused", None, {"reason": str(exc)})
            continue
        if plan.run_at is not None:
            tx_id = schedules_repo.insert_run(session, _run_values(schedule, plan.run_at, plan.due_count))
            if tx_id is not None:
                created.append(tx_id)
                schedule.run_count += 1
                audit.record(
                    session,
                    action="transaction.requested.transfer",
                    entity_type="transaction",
                    entity_id=tx_id,
                    actor_id=schedule.created_by,
                    data={"schedule_id": str(schedule.id), "scheduled_run_at": plan.run_at.isoformat()},
                )
            schedule.last_run_at = plan.run_at
        if plan.skipped:
            _audit(
                session,
                schedule,
                "schedule.runs_missed",
                None,
                {
                    "due": plan.due_count,
                    "not_run": plan.skipped,
                    "policy": schedule.misfire_policy,
                    "run_at": plan.run_at.isoformat() if plan.run_at else None,
                },
            )
            log.warning(
                "schedules.runs_missed",
                schedule_id=str(schedule.id),
                due=plan.due_count,
                not_run=plan.skipped,
            )
        if plan.next_run_at is None:
            schedule.status, schedule.next_run_at = "ended", None
            _audit(session, schedule, "schedule.ended", None, {})
        else:
            schedule.next_run_at = plan.next_run_at
    session.flush()
    outbox.record(session, outbox.transactions_by_id(session, created, created=True))
    return created


def _run_values(schedule: Schedule, run_at: datetime, due_count: int) -> dict:
    return {
        "id": uuid.uuid4(),
        "type": "transfer",
        "status": "pending",
        "from_account_id": schedule.from_account_id,
        "to_account_id": schedule.to_account_id,
        "amount_minor": schedule.amount_minor,
        "currency": schedule.currency,
        "reference": schedule.reference,
        # What the run stands for: its run time and how many due run times it covers
        # (more than 1 when the scheduler was down and the runs were coalesced).
        "metadata_": {"scheduled_run_at": run_at.isoformat(), "covers_runs": due_count},
        "created_by": schedule.created_by,
        "scheduled_for": run_at,
        "schedule_id": schedule.id,
        "scheduled_run_at": run_at,
    }


def record_run_outcome(
    session: Session,
    schedule_id: uuid.UUID,
    *,
    transaction_id: uuid.UUID,
    status: str,
    failure_code: str | None,
    settings: Settings | None = None,
) -> None:
    """Called in the posting's transaction once a run is decided (the ledger itself knows
    nothing of schedules): a completed run resets the failure streak; a failed one
    extends it, and at `schedule_max_consecutive_failures` the schedule pauses itself and
    says why."""
    if status not in ("completed", "failed"):
        return
    schedule = schedules_repo.get_for_update(session, schedule_id)
    if schedule is None:
        return
    if status == "completed":
        schedule.consecutive_failures = 0
        return
    schedule.consecutive_failures += 1
    limit = (settings or get_settings()).schedule_max_consecutive_failures
    if schedule.status == "active" and 0 < limit <= schedule.consecutive_failures:
        reason = (
            f"paused automatically after {schedule.consecutive_failures} consecutive failed runs "
            f"(last: {failure_code})"
        )
        _set_paused(schedule, reason)
        _audit(
            session,
            schedule,
            "schedule.auto_paused",
            None,
            {"reason": reason, "failure_code": failure_code, "transaction_id": str(transaction_id)},
        )
        log.warning(
            "schedules.auto_paused", schedule_id=str(schedule.id), failures=schedule.consecutive_failures
        )


def _audit(
    session: Session, schedule: Schedule, action: str, principal: Principal | None, data: dict
) -> None:
    audit.record(
        session,
        action=action,
        entity_type="schedule",
        entity_id=schedule.id,
        actor_id=principal.id if principal else None,
        data=data,
    )
