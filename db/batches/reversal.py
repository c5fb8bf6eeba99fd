"""Batch reversal: `POST /batches/{id}/reverse` makes a new batch whose lines move back
every completed line of a finished batch, each an ordinary `reversal` transaction with
`reverses` set (so the original line gains `reversed_by`), applied by the same chunk
actors and posting engine as any batch, in the original's `mode` unless told.

- Only a finished batch (`completed`, `completed_with_errors`, `failed`) with no
  dead-lettered lines can be reversed; a reversal batch cannot be (as a single reversal
  cannot), and a batch is reversed at most once: `uq_batches_reverses` over effective
  reversal batches (a failed or cancelled one moved nothing and blocks nothing, like a
  failed single reversal), checked under the original's row lock first (409).
- A line already reversed on its own is skipped: an item `rejected` with failure code
  `already_reversed` naming the reversal, so the items and results.csv report it. A
  reversal batch counts such skips as done when it settles (`states.settle`).
- The lines are made in blocks under the original lines' row locks (line order, after
  the batch row: the lock order of every writer), so a single reversal racing this one
  waits or gets its 409, and `uq_transactions_reverses` is the backstop.
"""

from __future__ import annotations

import hashlib
import json
import uuid

from sqlalchemy.orm import Session

from db import idempotency
from db.audit import repository as audit
from db.batches import line_repository as lines_repo
from db.batches import repository as batches_repo
from db.batches import states
from db.batches.ingest import INGEST_BLOCK, OrderedIds
from db.core.errors import Conflict, Forbidden, NotFound
from db.core.money import format_minor
from db.core.principal import Principal
from db.events import outbox
from db.idempotency import Submitted
from db.models import Batch
from db.transactions import repository as transactions_repo

REVERSIBLE = ("completed", "completed_with_errors", "failed")
SKIPPED_CODE = "already_reversed"


def _fingerprint(batch_id: uuid.UUID, mode: str | None) -> str:
    canonical = json.dumps({"reverses": str(batch_id), "mode": mode}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def reverse_batch(
    session: Session,
    principal: Principal,
    batch_id: uuid.UUID,
    *,
    mode: str | None,
    idempotency_key: str | None,
    request_id: str | None = None,
) -> Submitted[Batch]:
    """Record the reversal batch (`processing`) with every line, in the caller's
    transaction; the caller sends its first chunk after commit."""
    if not principal.sees_everything:
        raise Forbidden("only finance or admin may reverse batches")
    fingerprint = _fingerprint(batch_id, mode)
    if idempotency_key:
        existing = batches_repo.by_idempotency_key(session, principal.id, idempotency_key)
        if existing is not None:
            return idempotency.replay(existing, fingerprint, kind="batch", differs="batch")
    original = batches_repo.get_for_update(session, batch_id)
    if original is None:
        raise NotFound("batch not found")
    if idempotency_key:
        # A concurrent twin with the same key held the lock before us and committed.
        existing = batches_repo.by_idempotency_key(session, principal.id, idempotency_key)
        if existing is not None:
            return idempotency.replay(existing, fingerprint, kind="batch", differs="batch")
    _check_reversible(session, original)

    new_id = batches_repo.insert_batch(
        session,
        {
            "id": uuid.uuid4(),
            "created_by": principal.id,
            "status": states.INITIAL,
            "mode": mode or original.mode,
            "source": "api",
            "content_format": "json",
            "reference": f"reversal of batch {original.id}",
            "idempotency_key": idempotency_key,
            "request_hash": fingerprint,
            "request_id": request_id,
            "reverses": original.id,
        },
    )
    if new_id is None:  # a unique key: only the idempotency key can be left (we hold the lock)
        existing = batches_repo.by_idempotency_key(session, principal.id, idempotency_key or "")
        if existing is None:
            raise Conflict("The batch conflicts with an existing one; retry.")
        return idempotency.replay(existing, fingerprint, kind="batch", differs="batch")
    batch = batches_repo.get(session, new_id)
    assert batch is not None
    reversing, skipped = _record_lines(session, original, batch, principal, request_id)
    if not reversing:
        raise Conflict(
            "Every completed line of the batch was already reversed on its own; nothing to reverse.",
            {"batch_id": str(original.id), "skipped": skipped},
        )
    batch = batches_repo.get_for_update(session, batch.id) or batch
    batch.total_items = reversing + skipped
    batch.pending_count = reversing
    batch.rejected_count = skipped
    batch.last_line = original.last_line
    session.flush()
    states.validated(batch)  # -> processing (a reversal is never scheduled)
    audit.record(
        session,
        action="batch.reversal_requested",
        entity_type="batch",
        entity_id=batch.id,
        actor_id=principal.id,
        data={"reverses": str(original.id), "mode": batch.mode, "lines": reversing, "skipped": skipped},
        request_id=request_id,
    )
    session.flush()
    return idempotency.created(batches_repo.get(session, batch.id) or batch)


def _check_reversible(session: Session, original: Batch) -> None:
    details: dict[str, object] = {"batch_id": str(original.id), "status": original.status}
    if original.reverses is not None:
        raise Conflict("A batch reversal cannot be reversed; submit a new batch instead.", details)
    if original.status not in REVERSIBLE:
        raise Conflict(
            f"Only a finished batch can be reversed; this one is {original.status}.",
            details,
        )
    if original.dead_lettered_count:
        raise Conflict(
            f"The batch has {original.dead_lettered_count} dead-lettered line(s): retry them (or let "
            "them be) before reversing it, so that no line can complete after its reversal.",
            details,
        )
    if not original.completed_count:
        raise Conflict("No line of the batch completed; nothing to reverse.", details)
    reversal = batches_repo.reversal_of(session, original.id)
    if reversal is not None:
        raise Conflict(
            "This batch was already reversed; a batch is reversed at most once.",
            {**details, "reversed_by": str(reversal.id)},
        )


def _record_lines(
    session: Session, original: Batch, batch: Batch, principal: Principal, request_id: str | None
) -> tuple[int, int]:
    """The reversal lines (same line numbers as the lines they reverse) and the skipped
    ones, a block of line numbers at a time; returns (reversing, skipped)."""
    ids = OrderedIds()
    reversing = skipped = 0
    for low in range(0, original.last_line + 1, INGEST_BLOCK):
        items = lines_repo.lock_items(session, original.id, lines=(low, low + INGEST_BLOCK))
        completed = [item for item in items if item.status == "completed"]
        # Read after the locks are ours: a single reversal committed while we waited counts.
        already = transactions_repo.reversed_by(session, [item.id for item in completed])
        rows, rejected = [], []
        for item in completed:
            if item.id in already:
                rejected.append(
                    (
                        batch.id,
                        item.line_no,
                        SKIPPED_CODE,
                        f"transaction {item.id} was already reversed by {already[item.id]}",
                        {
                            "from_account_id": str(item.to_account_id),
                            "to_account_id": str(item.from_account_id),
                            "amount": format_minor(item.amount_minor, item.currency),
                            "currency": item.currency,
                        },
                    )
                )
                continue
            rows.append(
                (
                    ids.next(),
                    "reversal",
                    "pending",
                    item.to_account_id,
                    item.from_account_id,
                    item.amount_minor,
                    item.currency,
                    None,
                    principal.id,
                    request_id,
                    None,
                    batch.id,
                    item.line_no,
                    item.id,
                )
            )
        lines_repo.copy_reversal_lines(session, rows)
        outbox.record(session, outbox.transactions_by_id(session, [row[0] for row in rows], created=True))
        lines_repo.copy_rejected(session, rejected)
        reversing, skipped = reversing + len(rows), skipped + len(rejected)
    return reversing, skipped
