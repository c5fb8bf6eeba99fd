"""A batch's lifecycle: the one writer of `Batch.status` and of the fields that go with it
(`failure_code`, `failure_message`, `started_at`, `completed_at`).

    received -> validating -> scheduled? -> processing -> completed | completed_with_errors | failed
    received | validating | scheduled -> cancelled      received | validating -> failed
    completed_with_errors | failed (dead_lettered) -> processing   (an operator's reopen)

(shared/API.md's batch status list.) A small upload is validated inside the upload
request, so `received` may skip `validating`. Ingest, cancel, release, the chunk posting
and the dead-letter recorders all move a batch through the functions below; a move the
table does not allow is a bug (`IllegalTransition`), never a silent overwrite. Callers
hold the batch row (locked, or under the batch's advisory lock) and flush as usual; the
repository runs the one conditional UPDATE that `start_validating` needs.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func
from sqlalchemy.orm import Session, object_session

from db.batches import repository as batches_repo
from db.events import outbox
from db.models import Batch

INITIAL = "received"
CANCELLABLE = ("received", "validating", "scheduled")
FINAL = ("completed", "completed_with_errors", "failed", "cancelled")
# Where a batch may go from each status; final statuses go nowhere.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "received": ("validating", "scheduled", "processing", "failed", "cancelled"),
    "validating": ("scheduled", "processing", "failed", "cancelled"),
    "scheduled": ("processing", "cancelled"),
    "processing": ("completed", "completed_with_errors", "failed"),
}


class IllegalTransition(RuntimeError):
    """A code path tried a move the lifecycle forbids: a bug, not a client's mistake."""


def can_move(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, ())


def _move(
    batch: Batch,
    target: str,
    *,
    code: str | None = None,
    message: str | None = None,
    only_from: tuple[str, ...] | None = None,
) -> None:
    if not can_move(batch.status, target) or (only_from is not None and batch.status not in only_from):
        raise IllegalTransition(f"batch {batch.id}: {batch.status} -> {target} is not allowed")
    batch.status = target
    if target == "processing":
        batch.started_at = func.now()
    if target in FINAL:
        batch.failure_code = code
        batch.failure_message = message
        batch.completed_at = func.now()
        session = object_session(batch)
        if session is not None:  # always, for a loaded batch; the event needs the session
            outbox.record(session, [outbox.batch_event(session, batch)])


def reopen(batch: Batch) -> None:
    """An operator retries a batch that ended because a chunk was dead-lettered: it is
    `processing` again, its failure cleared. Only a dead-lettered ending can be undone
    (its remaining lines moved no money); any other final status is final."""
    if batch.status not in ("completed_with_errors", "failed") or batch.failure_code != "dead_lettered":
        raise IllegalTransition(f"batch {batch.id}: {batch.status} cannot be reopened")
    batch.status = "processing"
    batch.failure_code = batch.failure_message = batch.completed_at = None


def start_validating(session: Session, batch_id: uuid.UUID) -> bool:
    """Visible progress of a stored upload (`received -> validating`), in the worker's own
    short transaction. False when the batch is no longer `received` (nothing to show)."""
    return batches_repo.update_status_if(
        session, batch_id, expected=("received",), values={"status": "validating"}
    )


def validated(batch: Batch) -> None:
    """Every line is recorded and some were accepted: wait for `scheduled_for`, or start."""
    _move(batch, "scheduled" if batch.scheduled_for else "processing", only_from=("received", "validating"))


def release(batch: Batch) -> None:
    """A scheduled batch whose time has come."""
    _move(batch, "processing", only_from=("scheduled",))


def cancel(batch: Batch) -> None:
    _move(batch, "cancelled")


def fail(batch: Batch, code: str | None, message: str) -> None:
    _move(batch, "failed", code=code, message=message)


def settle(session: Session, batch: Batch) -> str:
    """Every line of a processing batch is decided: its final status from its counters
    (kept by the trigger, so read after a flush). Returns the status."""
    session.flush()
    batch = batches_repo.get(session, batch.id) or batch
    # A reversal batch's rejected items are lines skipped as already reversed on their
    # own (db/batches/reversal.py): done, not errors.
    skipped = batch.rejected_count if batch.reverses is not None else 0
    if batch.completed_count + skipped == batch.total_items:
        _move(batch, "completed")
    elif batch.completed_count == 0:
        fail(
            batch,
            "nothing_applied",
            f"no line moved money: {batch.rejected_count} rejected, {batch.failed_count} failed, "
            f"{batch.cancelled_count} cancelled, {batch.dead_lettered_count} dead-lettered",
        )
    else:
        _move(batch, "completed_with_errors")
    session.flush()
    return batch.status


def dead_lettered(batch: Batch, lines: int, reason: str) -> None:
    """A chunk's message was dead-lettered: the batch ends with what was applied before."""
    _move(
        batch,
        "completed_with_errors" if batch.completed_count else "failed",
        code="dead_lettered",
        message=f"{lines} line(s) could not be applied: {reason[:500]}",
        only_from=("processing",),
    )
