from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import LedgerEntry


def entries_of(
    session: Session, account_id: uuid.UUID, *, before_id: int | None, limit: int
) -> list[LedgerEntry]:
    """Newest first, keyset-paginated on the entry id."""
    query = select(LedgerEntry).where(LedgerEntry.account_id == account_id)
    if before_id is not None:
        query = query.where(LedgerEntry.id < before_id)
    return list(session.scalars(query.order_by(LedgerEntry.id.desc()).limit(limit + 1)))


def entries_of_transaction(session: Session, transaction_id: uuid.UUID) -> list[LedgerEntry]:
    return list(session.scalars(select(LedgerEntry).where(LedgerEntry.transaction_id == transaction_id)))


def balance_history(
    session: Session,
    account_id: uuid.UUID,
    *,
    since: datetime | None,
    until: datetime | None,
    after_id: int | None,
    limit: int,
) -> list[LedgerEntry]:
    """The account's entries oldest first (each carries the balance after it), with
    `since <= created_at <= until`; keyset-paginated on the entry id (limit+1 rows)."""
    query = select(LedgerEntry).where(LedgerEntry.account_id == account_id)
    if since is not None:
        query = query.where(LedgerEntry.created_at >= since)
    if until is not None:
        query = query.where(LedgerEntry.created_at <= until)
    if after_id is not None:
        query = query.where(LedgerEntry.id > after_id)
    return list(session.scalars(query.order_by(LedgerEntry.id).limit(limit + 1)))


def balance_at(session: Session, account_id: uuid.UUID, at: datetime) -> int:
    """The balance after the last entry (by id) created at or before `at`; 0 before the first."""
    query = (
        select(LedgerEntry.balance_after_minor)
        .where(LedgerEntry.account_id == account_id, LedgerEntry.created_at <= at)
        .order_by(LedgerEntry.id.desc())
        .limit(1)
    )
    return session.scalars(query).first() or 0
