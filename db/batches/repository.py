"""Queries of batch rows (claims, cursor, uniqueness) and of stored uploads. The lines
of a batch have their own module, `db.batches.line_repository`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, delete, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.batches.line_repository import changed
from db.models import Batch, BatchUpload

# pg_advisory_xact_lock's first key: "this lock is about a batch" (the second is the
# batch id's hash), so it cannot collide with advisory locks taken for other reasons.
BATCH_LOCK_CLASS = 6006


# --- batches --------------------------------------------------------------------------


def get(session: Session, batch_id: uuid.UUID) -> Batch | None:
    return session.get(Batch, batch_id, populate_existing=True)


def get_for_update(session: Session, batch_id: uuid.UUID) -> Batch | None:
    """FOR NO KEY UPDATE: an ingest inserting this batch's lines holds KEY SHARE on the
    row (the FK check) for as long as it runs; a cancel must not wait for it."""
    return session.scalars(
        select(Batch)
        .where(Batch.id == batch_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).one_or_none()


def try_lock(session: Session, batch_id: uuid.UUID) -> bool:
    """Transaction-scoped advisory lock: one worker at a time ingests or applies a
    given batch; a duplicate delivery that finds it taken simply steps aside."""
    return bool(
        session.execute(
            text("SELECT pg_try_advisory_xact_lock(:cls, hashtext(:id))"),
            {"cls": BATCH_LOCK_CLASS, "id": str(batch_id)},
        ).scalar_one()
    )


def insert_batch(session: Session, values: dict[str, Any]) -> uuid.UUID | None:
    """None when a unique key (idempotency key, or the same content of a live batch)
    already exists; a concurrent twin blocks until the first commits, then sees it."""
    return session.execute(
        insert(Batch).values(**values).on_conflict_do_nothing().returning(Batch.id)
    ).scalar_one_or_none()


def by_idempotency_key(session: Session, created_by: uuid.UUID, key: str) -> Batch | None:
    return session.scalars(
        select(Batch).where(Batch.created_by == created_by, Batch.idempotency_key == key)
    ).one_or_none()


def reversal_of(session: Session, batch_id: uuid.UUID) -> Batch | None:
    """The effective reversal batch of `batch_id` (any status but failed/cancelled)."""
    return session.scalars(
        select(Batch).where(Batch.reverses == batch_id, Batch.status.not_in(("failed", "cancelled")))
    ).one_or_none()


def live_by_content(session: Session, sha256: str) -> Batch | None:
    """The batch holding this content's uniqueness (one that did not end without
    moving money: failed and cancelled batches release their content)."""
    return session.scalars(
        select(Batch).where(Batch.content_sha256 == sha256, Batch.status.not_in(("failed", "cancelled")))
    ).first()


def list_batches(
    session: Session, *, status: str | None, created_by: uuid.UUID | None, before_seq: int | None, limit: int
) -> list[Batch]:
    query = select(Batch)
    if status:
        query = query.where(Batch.status == status)
    if created_by:
        query = query.where(Batch.created_by == created_by)
    if before_seq is not None:
        query = query.where(Batch.seq < before_seq)
    return list(session.scalars(query.order_by(Batch.seq.desc()).limit(limit + 1)))


def update_status_if(
    session: Session, batch_id: uuid.UUID, *, expected: Sequence[str], values: dict[str, Any]
) -> bool:
    """One conditional UPDATE for `db.batches.states` (the only caller): no row lock
    waited for up front, nothing written unless the status is still one of `expected`."""
    result = session.execute(
        update(Batch).where(Batch.id == batch_id, Batch.status.in_(expected)).values(**values)
    )
    return changed(result) == 1


def advance_cursor(session: Session, batch_id: uuid.UUID, *, expected: int, next_line: int) -> bool:
    """Move the processing cursor only if nobody moved it meanwhile (compare-and-set).
    The status that may follow is `db.batches.states`' to write."""
    result = session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.next_line == expected, Batch.status == "processing")
        # A new chunk: the failures counted so far were the previous one's.
        .values(next_line=next_line, chunk_failures=0)
    )
    return changed(result) == 1


def count_chunk_failure(session: Session, batch_id: uuid.UUID) -> None:
    """A chunk attempt failed (Dramatiq retries it after a backoff): count it and touch
    the row, so the stalled-batch sweeper leaves the retry alone."""
    session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.status == "processing")
        .values(chunk_failures=Batch.chunk_failures + 1)
    )


def claim_due_scheduled(session: Session, *, now: datetime, limit: int) -> list[uuid.UUID]:
    return list(
        session.scalars(
            select(Batch.id)
            .where(Batch.status == "scheduled", Batch.scheduled_for <= now)
            .order_by(Batch.scheduled_for)
            .limit(limit)
            .with_for_update(skip_locked=True, key_share=True)
        )
    )


def stale(
    session: Session,
    *,
    statuses: Sequence[str],
    idle_s: float,
    limit: int,
    min_backoff_s: float = 0.0,
    max_backoff_s: float = 0.0,
) -> list[tuple[uuid.UUID, int]]:
    """Batches in `statuses` nobody touched for `idle_s` (their message was lost), and
    cancelled ones whose upload was never validated (their lines are still to record).

    A batch whose chunk failed `chunk_failures` times waits, on top of `idle_s`, the
    longest backoff Dramatiq may wait before its retry (as the pending-transfer sweeper
    does, db.transactions.repository.claim_stale_pending): a re-send during the backoff
    would start a second retry chain beside the first, each with a fresh budget."""
    unvalidated = select(BatchUpload.part).where(BatchUpload.batch_id == Batch.id).exists()
    retry_wait = case(
        (Batch.chunk_failures == 0, literal(0.0)),
        # Dramatiq's wait after the n-th failure is min_backoff * 2**(n-1), jittered up
        # to twice that (dramatiq.common.compute_backoff), capped near max_backoff.
        else_=func.least(literal(min_backoff_s) * func.power(2, Batch.chunk_failures), max_backoff_s),
    )
    idle_for = func.extract("epoch", func.now() - Batch.updated_at)
    rows = session.execute(
        select(Batch.id, Batch.next_line)
        .where(
            or_(Batch.status.in_(statuses), and_(Batch.status == "cancelled", unvalidated)),
            idle_for > literal(idle_s) + retry_wait,
        )
        .order_by(Batch.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if rows:
        session.execute(update(Batch).where(Batch.id.in_([r[0] for r in rows])).values(updated_at=func.now()))
    return [(r[0], r[1]) for r in rows]


# --- uploads --------------------------------------------------------------------------


def add_upload_part(session: Session, batch_id: uuid.UUID, part: int, data: bytes) -> None:
    session.execute(insert(BatchUpload).values(batch_id=batch_id, part=part, data=data))


def upload_parts(session: Session, batch_id: uuid.UUID) -> Iterator[bytes]:
    """The stored upload, one part per query so at most one part is in memory."""
    part = 0
    while True:
        data = session.execute(
            select(BatchUpload.data).where(BatchUpload.batch_id == batch_id, BatchUpload.part == part)
        ).scalar_one_or_none()
        if data is None:
            return
        yield bytes(data)
        part += 1


def has_upload(session: Session, batch_id: uuid.UUID) -> bool:
    return (
        session.execute(select(BatchUpload.part).where(BatchUpload.batch_id == batch_id).limit(1)).first()
        is not None
    )


def delete_upload(session: Session, batch_id: uuid.UUID) -> None:
    session.execute(delete(BatchUpload).where(BatchUpload.batch_id == batch_id))
