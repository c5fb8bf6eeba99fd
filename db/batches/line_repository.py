"""Queries of a batch's lines: the bulk writes of ingest and of the chunk posting, the
locks a chunk takes, and the reads of items and results.

Accepted lines are transactions (`batch_id`, `batch_line`); rejected ones are rows of
`batch_rejected_lines`. Bulk rows go in with PostgreSQL COPY (psycopg's `cursor.copy`)
on the session's own connection, inside the caller's transaction: a block of thousands
of rows is one round trip, and a rollback takes them back like any other statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import BigInteger, String, cast, func, null, select, text, union_all, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Session

from db.core.sql import copy_rows as _copy
from db.events import outbox
from db.models import Account, BatchRejectedLine, Transaction

TRANSACTION_COPY_COLUMNS = (
    "id",
    "type",
    "status",
    "from_account_id",
    "to_account_id",
    "amount_minor",
    "currency",
    "reference",
    "created_by",
    "request_id",
    "scheduled_for",
    "batch_id",
    "batch_line",
)


REJECTED_COPY_COLUMNS = ("batch_id", "line_no", "code", "reason", "raw")


def changed(result: Any) -> int:
    """Rows a DML statement changed (`execute` is typed as returning a plain Result)."""
    return int(result.rowcount)


def analyze(session: Session) -> None:
    """Fresh planner statistics after a big ingest (autovacuum would get there later),
    so item pages use the (batch_id, batch_line) index instead of sorting the batch."""
    session.execute(text("ANALYZE transactions, batch_rejected_lines"))


def accounts_by_id(session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Account]:
    return {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(list(ids))))}


def copy_transactions(session: Session, rows: Iterable[Sequence[Any]]) -> None:
    _copy(session, "transactions", TRANSACTION_COPY_COLUMNS, rows)


def copy_reversal_lines(session: Session, rows: Iterable[Sequence[Any]]) -> None:
    """A reversal batch's lines (db/batches/reversal.py): TRANSACTION_COPY_COLUMNS plus
    `reverses`, the line's transaction they move back."""
    _copy(session, "transactions", (*TRANSACTION_COPY_COLUMNS, "reverses"), rows)


def copy_rejected(session: Session, rows: Iterable[Sequence[Any]]) -> None:
    _copy(
        session,
        "batch_rejected_lines",
        REJECTED_COPY_COLUMNS,
        (tuple(row[:4]) + (Jsonb(row[4]) if row[4] is not None else None,) for row in rows),
    )


def mark_unfinished(
    session: Session, batch_id: uuid.UUID, *, status: str, message: str, from_line: int = 0
) -> int:
    """Every not-yet-decided transaction of the batch (from `from_line` on) becomes
    `status` (cancelled, dead_lettered) with `message`; returns how many."""
    query = update(Transaction).where(
        Transaction.batch_id == batch_id, Transaction.status.in_(("pending", "scheduled"))
    )
    if from_line:
        query = query.where(Transaction.batch_line >= from_line)
    ids = (
        session.execute(
            query.values(status=status, failure_message=message[:2000], updated_at=func.now()).returning(
                Transaction.id
            )
        )
        .scalars()
        .all()
    )
    outbox.record(session, outbox.transactions_by_id(session, list(ids)))
    return len(ids)


def reopen_dead_lettered(session: Session, batch_id: uuid.UUID) -> list[int]:
    """The batch's dead-lettered lines back to `pending`; their line numbers."""
    return list(
        session.scalars(
            update(Transaction)
            .where(Transaction.batch_id == batch_id, Transaction.status == "dead_lettered")
            .values(status="pending", failure_message=None, updated_at=func.now())
            .returning(Transaction.batch_line)
        )
    )


def release_scheduled(session: Session, batch_id: uuid.UUID) -> int:
    return changed(
        session.execute(
            update(Transaction)
            .where(Transaction.batch_id == batch_id, Transaction.status == "scheduled")
            .values(status="pending", updated_at=func.now())
        )
    )


_ITEM_COLUMNS = (
    Transaction.batch_line.label("line_no"),
    Transaction.id,
    Transaction.type,
    Transaction.status,
    Transaction.from_account_id,
    Transaction.to_account_id,
    Transaction.amount_minor,
    Transaction.currency,
)


def lock_items(session: Session, batch_id: uuid.UUID, *, lines: tuple[int, int]) -> list[Any]:
    """The accepted lines in the window [lines[0], lines[1]), in line order, with their
    transaction rows locked. A window of line numbers, not LIMIT: its cost stays bounded
    whatever the planner believes about the table right after a million rows arrived."""
    low, high = lines
    return list(
        session.execute(
            select(*_ITEM_COLUMNS)
            .where(
                Transaction.batch_id == batch_id, Transaction.batch_line >= low, Transaction.batch_line < high
            )
            .order_by(Transaction.batch_line)
            .with_for_update(key_share=True)  # ledger entries' FK checks may share it
        ).all()
    )


_NULL_UUID = cast(null(), PG_UUID(as_uuid=True))


_NULL_TEXT = cast(null(), String)


_NULL_BIGINT = cast(null(), BigInteger)


def item_page(
    session: Session,
    batch_id: uuid.UUID,
    *,
    status: str | None,
    after_line: int | None,
    limit: int,
    before_line: int | None = None,
) -> list[Any]:
    """Every line's outcome in line order: accepted lines from `transactions`, rejected
    ones from `batch_rejected_lines` (merged). Plain rows, not ORM objects, so
    results.csv streams a million of them quickly. `status` is an item status
    (pending covers scheduled lines too)."""
    parts = []
    if status != "rejected":
        accepted = select(
            Transaction.batch_line.label("line_no"),
            Transaction.id.label("transaction_id"),
            _NULL_TEXT.label("reject_code"),
            _NULL_TEXT.label("reject_reason"),
            cast(null(), JSONB).label("raw"),
            Transaction.type,
            Transaction.status,
            Transaction.from_account_id,
            Transaction.to_account_id,
            Transaction.amount_minor,
            Transaction.currency,
            Transaction.reference,
            Transaction.failure_code,
            Transaction.failure_message,
        ).where(Transaction.batch_id == batch_id)
        if after_line is not None:
            accepted = accepted.where(Transaction.batch_line > after_line)
        if before_line is not None:
            accepted = accepted.where(Transaction.batch_line < before_line)
        if status == "pending":
            accepted = accepted.where(Transaction.status.in_(("pending", "scheduled")))
        elif status:
            accepted = accepted.where(Transaction.status == status)
        parts.append(accepted.order_by(Transaction.batch_line).limit(limit + 1))
    if status in (None, "rejected"):
        rejected = select(
            BatchRejectedLine.line_no,
            _NULL_UUID.label("transaction_id"),
            BatchRejectedLine.code.label("reject_code"),
            BatchRejectedLine.reason.label("reject_reason"),
            BatchRejectedLine.raw,
            _NULL_TEXT.label("type"),
            _NULL_TEXT.label("status"),
            _NULL_UUID.label("from_account_id"),
            _NULL_UUID.label("to_account_id"),
            _NULL_BIGINT.label("amount_minor"),
            _NULL_TEXT.label("currency"),
            _NULL_TEXT.label("reference"),
            _NULL_TEXT.label("failure_code"),
            _NULL_TEXT.label("failure_message"),
        ).where(BatchRejectedLine.batch_id == batch_id)
        if after_line is not None:
            rejected = rejected.where(BatchRejectedLine.line_no > after_line)
        if before_line is not None:
            rejected = rejected.where(BatchRejectedLine.line_no < before_line)
        parts.append(rejected.order_by(BatchRejectedLine.line_no).limit(limit + 1))
    merged = union_all(*(part.subquery().select() for part in parts)).subquery()
    return list(session.execute(select(merged).order_by(merged.c.line_no).limit(limit + 1)).all())
