from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.core.sql import constant
from db.models import Account, Schedule, Transaction


def get(session: Session, schedule_id: uuid.UUID) -> Schedule | None:
    return session.get(Schedule, schedule_id)


def get_for_update(session: Session, schedule_id: uuid.UUID) -> Schedule | None:
    return session.scalars(
        select(Schedule)
        .where(Schedule.id == schedule_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def active_created_by(session: Session, user_id: uuid.UUID) -> list[Schedule]:
    """The user's active schedules, locked (the scheduler claims them with SKIP LOCKED)."""
    return list(
        session.scalars(
            select(Schedule)
            .where(Schedule.created_by == user_id, Schedule.status == "active")
            .with_for_update()
        )
    )


def list_visible(
    session: Session,
    *,
    owner_id: uuid.UUID | None,
    status: str | None,
    account_id: uuid.UUID | None,
    before_seq: int | None,
    limit: int,
) -> list[Schedule]:
    """Newest first, keyset-paginated on `seq`. `owner_id` restricts to schedules the
    user created or that draw on the user's accounts; `owner_id=None` means all."""
    query = select(Schedule)
    if owner_id is not None:
        own = select(Account.id).where(Account.owner_id == owner_id)
        query = query.where(or_(Schedule.created_by == owner_id, Schedule.from_account_id.in_(own)))
    # Deleted schedules are listed only when asked for by status.
    query = query.where(Schedule.status == status if status else Schedule.status != "deleted")
    if account_id is not None:
        query = query.where(or_(Schedule.from_account_id == account_id, Schedule.to_account_id == account_id))
    if before_seq is not None:
        query = query.where(Schedule.seq < before_seq)
    return list(session.scalars(query.order_by(Schedule.seq.desc()).limit(limit + 1)))


def claim_due(session: Session, *, now: datetime, limit: int) -> list[Schedule]:
    """Lock active schedules whose next run has come (SKIP LOCKED: a second claimer, or
    a pause/delete in flight, takes other rows instead of waiting or repeating)."""
    return list(
        session.scalars(
            select(Schedule)
            .where(Schedule.status == constant("active"), Schedule.next_run_at <= now)
            .order_by(Schedule.next_run_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
    )


def insert_run(session: Session, values: dict[str, Any]) -> uuid.UUID | None:
    """Insert a run's transaction; None if this (schedule, run time) already exists."""
    return session.execute(
        insert(Transaction)
        .values(**values)
        .on_conflict_do_nothing(constraint="uq_transactions_schedule_id_scheduled_run_at")
        .returning(Transaction.id)
    ).scalar_one_or_none()


def runs_of(
    session: Session, schedule_id: uuid.UUID, *, before_seq: int | None, limit: int
) -> list[Transaction]:
    """The schedule's run transactions, newest first (keyset on `seq`)."""
    query = select(Transaction).where(Transaction.schedule_id == schedule_id)
    if before_seq is not None:
        query = query.where(Transaction.seq < before_seq)
    return list(session.scalars(query.order_by(Transaction.seq.desc()).limit(limit + 1)))
