from __future__ import annotations

import uuid

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
