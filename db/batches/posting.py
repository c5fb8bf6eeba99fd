"""Applying batch lines to the ledger: many transfers per DB transaction.

A chunk is one call of the posting engine (`db.ledger.posting.engine`) over thousands
of lines, the same engine a single transfer or a worker's group goes through:

1. one advisory lock per batch, so duplicate deliveries of a chunk step aside instead
   of queueing behind each other, and the batch's cursor says where the chunk starts;
2. lock the chunk's transaction rows (line order); lines no longer `pending` are skipped,
   which is what makes a redelivered chunk harmless;
3. lock every account the chunk touches, once, in ascending id order (the global order
   of every writer, so chunks and single transfers never deadlock);
4. the engine decides each line in file order against the locked balances, held in
   memory, so line 7 sees the money line 3 moved, under the same rules as a transfer;
5. and flushes: entries with COPY, balances and statuses with one UPDATE ... FROM unnest each.

Mode `atomic` does the same for the whole batch in one DB transaction and writes under
a savepoint: the first line that fails rolls every entry back, and the batch ends
`failed` with that line's reason while every other line is `cancelled`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from db.audit import repository as audit
from db.batches import line_repository as lines_repo
from db.batches import repository as batches_repo
from db.batches import states
from db.core.logs import get_logger
from db.events import outbox
from db.ledger import repository as ledger_repo
from db.ledger.posting import engine
from db.models import Batch

log = get_logger(__name__)

# Line numbers read (and locked) per statement by the atomic mode.
BLOCK = 5000


@dataclass(frozen=True)
class ChunkOutcome:
    status: str  # applied | noop | busy
    completed: int = 0
    failed: int = 0
    skipped: int = 0
    next_line: int | None = None  # where the next chunk starts; None when there is none
    batch_status: str | None = None


def apply_chunk(session: Session, batch_id: uuid.UUID, start_line: int, *, chunk_size: int) -> ChunkOutcome:
    """Apply the next `chunk_size` lines from `start_line` (the batch's cursor) in the
    caller's transaction. The caller commits, then sends the chunk at `next_line`."""
    if not batches_repo.try_lock(session, batch_id):
        return ChunkOutcome("busy")  # another delivery is applying this batch right now
    batch = batches_repo.get(session, batch_id)
    if batch is None or batch.status != "processing" or batch.next_line != start_line:
        return ChunkOutcome("noop")  # finished, cancelled, or a stale duplicate of an earlier chunk
    if batch.mode == "atomic":
        return _apply_atomic(session, batch)

    next_line = start_line + chunk_size
    items = lines_repo.lock_items(session, batch.id, lines=(start_line, next_line))
    pending = [item for item in items if item.status == "pending"]
    # Lines no longer pending were decided by an earlier delivery, or cancelled on their own.
    skipped = len(items) - len(pending)
    decided = engine.post(session, pending, audit_each=False)

    done = next_line > batch.last_line
    completed = sum(1 for d in decided if d.decision.status == "completed")
    if not batches_repo.advance_cursor(session, batch.id, expected=start_line, next_line=next_line):
        raise RuntimeError(f"batch {batch.id}: cursor moved under the advisory lock")
    batch_status = states.settle(session, batch) if done else "processing"
    audit.record(
        session,
        action="batch.chunk_applied",
        entity_type="batch",
        entity_id=batch.id,
        data={
            "from_line": start_line,
            "to_line": next_line - 1,
            "completed": completed,
            "failed": len(decided) - completed,
            "skipped": skipped,
        },
        request_id=batch.request_id,
    )
    return ChunkOutcome(
        "applied",
        completed=completed,
        failed=len(decided) - completed,
        skipped=skipped,
        next_line=None if done else next_line,
        batch_status=batch_status,
    )


def _apply_atomic(session: Session, batch: Batch) -> ChunkOutcome:
    windows = [(low, low + BLOCK) for low in range(batch.next_line, batch.last_line + 1, BLOCK)]
    # 1. Lock every line's transaction row, in line order; all must still be pending.
    accounts: set[uuid.UUID] = set()
    blocker = None
    for window in windows:
        block = lines_repo.lock_items(session, batch.id, lines=window)
        accounts |= engine.accounts_of(block)
        if blocker is None:
            blocker = next((item for item in block if item.status != "pending"), None)
    if blocker is not None:
        return _fail_atomic(session, batch, blocker.line_no, None, f"the line is {blocker.status}")

    # 2. Lock the accounts once, then decide and write block by block under a savepoint.
    posting = engine.Posting(session, accounts)
    savepoint = session.begin_nested()
    completed = 0
    for window in windows:
        block = lines_repo.lock_items(session, batch.id, lines=window)  # already ours: no wait
        for item in block:
            decision = posting.decide(item)
            if decision.status != "completed":
                savepoint.rollback()  # takes back every entry, balance and status written so far
                return _fail_atomic(
                    session,
                    batch,
                    item.line_no,
                    (item.id, decision.failure_code),
                    decision.failure_message or "",
                )
        completed += len(posting.flush(audit_each=False))
    savepoint.commit()
    batches_repo.advance_cursor(session, batch.id, expected=batch.next_line, next_line=batch.last_line + 1)
    batch_status = states.settle(session, batch)
    audit.record(
        session,
        action="batch.applied_atomically",
        entity_type="batch",
        entity_id=batch.id,
        data={"completed": completed},
        request_id=batch.request_id,
    )
    return ChunkOutcome("applied", completed=completed, batch_status=batch_status)


def _fail_atomic(
    session: Session,
    batch: Batch,
    line_no: int,
    failing: tuple[uuid.UUID, str | None] | None,
    reason: str,
) -> ChunkOutcome:
    """Nothing moves: the failing line is `failed` with its code, every other line
    `cancelled` with the reason, the batch `failed`."""
    code = failing[1] if failing else "line_not_pending"
    if failing:
        ledger_repo.write_decisions(session, [(failing[0], "failed", code, reason)])
        outbox.record(session, outbox.transactions_by_id(session, [failing[0]]))
    message = f"line {line_no}: {code}: {reason}; nothing in the atomic batch moved money"
    cancelled = lines_repo.mark_unfinished(
        session,
        batch.id,
        status="cancelled",
        message=f"not applied: the atomic batch failed at line {line_no}",
    )
    batches_repo.advance_cursor(session, batch.id, expected=batch.next_line, next_line=line_no)
    states.fail(batch, code, message)
    session.flush()
    audit.record(
        session,
        action="batch.failed",
        entity_type="batch",
        entity_id=batch.id,
        data={"line": line_no, "failure_code": code, "cancelled": cancelled},
        request_id=batch.request_id,
    )
    log.info("batches.atomic_failed", batch_id=str(batch.id), line=line_no, failure_code=code)
    return ChunkOutcome("applied", failed=1 if failing else 0, batch_status="failed")
