"""Actors of the `batches` queue (validating big uploads, applying chunks) and the
batch ticks of the `maintenance` queue (releasing scheduled batches, re-sending a
chunk Redis lost).

Each chunk sends the next one after it commits, so one batch is applied chunk after
chunk in file order, and two batches proceed side by side on different worker
threads. Every actor is safe to deliver twice: the batch's advisory lock and cursor
make a duplicate a no-op, and each line's transaction row is only decided while
`pending`.
"""

from __future__ import annotations

import time
import uuid

import dramatiq
from prometheus_client import Counter, Histogram

from db.audit import repository as audit
from db.batches import ingest as batch_ingest
from db.batches import line_repository as lines_repo
from db.batches import posting as batch_posting
from db.batches import repository as batches_repo
from db.batches import service as batches_service
from db.batches import states
from db.core.config import get_settings
from db.core.logs import get_logger
from db.models import Batch
from db.session import UnitOfWork, database_now, unit_of_work
from workers.middleware import never_retry

log = get_logger(__name__)
_settings = get_settings()

LINES_APPLIED = Counter(
    "ledgerq_batch_lines_applied_total", "Batch lines decided by chunk actors", ["status"]
)
CHUNK_SECONDS = Histogram(
    "ledgerq_batch_chunk_seconds",
    "Time to apply one chunk",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
)
BATCHES_RESENT = Counter("ledgerq_batches_resent_total", "Stalled batches whose next step was re-sent")


def send_next_step(uow: UnitOfWork, batch: Batch) -> None:
    """After the unit of work commits, send what the batch needs next. (A cancelled
    batch whose upload was never validated still gets its lines recorded, as cancelled.)"""
    if batch.status in ("received", "validating", "cancelled") and not batch.total_items:
        uow.enqueue(ingest, batch_id=str(batch.id))
    elif batch.status == "processing":
        uow.enqueue(apply_chunk, batch_id=str(batch.id), start_line=batch.next_line)


def record_chunk_dead_letter(kwargs: dict, reason: str) -> None:
    """The chunk could not be applied after every retry: its lines and the rest of the
    batch become `dead_lettered` (no money moved for them; ops can inspect and retry the
    message), and the batch ends with what was applied before."""
    batch_id = uuid.UUID(kwargs["batch_id"])
    with unit_of_work() as uow:
        # The batch row first, then its lines: the lock order of every writer.
        batch = batches_repo.get_for_update(uow.session, batch_id)
        if batch is None or batch.status != "processing":
            return
        from_line = 0 if batch.mode == "atomic" else int(kwargs.get("start_line", 0))
        count = lines_repo.mark_unfinished(
            uow.session, batch_id, status="dead_lettered", message=reason, from_line=from_line
        )
        states.dead_lettered(batch, count, reason)
        audit.record(
            uow.session,
            action="batch.dead_lettered",
            entity_type="batch",
            entity_id=batch_id,
            data={"lines": count},
        )


def record_ingest_dead_letter(kwargs: dict, reason: str) -> None:
    batch_id = uuid.UUID(kwargs["batch_id"])
    with unit_of_work() as uow:
        batch = batches_repo.get_for_update(uow.session, batch_id)
        if batch is None or batch.status not in ("received", "validating"):
            return
        states.fail(batch, "ingest_failed", f"the file could not be validated: {reason[:500]}")
        audit.record(uow.session, action="batch.dead_lettered", entity_type="batch", entity_id=batch_id)


# Validating a million stored lines takes about a minute and applying an atomic batch
# of that size a few: far beyond the 20 s of a single transfer.
@dramatiq.actor(
    actor_name="batches.ingest",
    queue_name="batches",
    time_limit=_settings.batch_time_limit_ms,
    on_dead_letter=record_ingest_dead_letter,
)
def ingest(batch_id: str) -> None:
    """Validate a stored upload and record every line (one DB transaction)."""
    settings = get_settings()
    batch_uuid = uuid.UUID(batch_id)
    with unit_of_work() as uow:  # visible progress: received -> validating
        states.start_validating(uow.session, batch_uuid)
    started = time.perf_counter()
    with unit_of_work() as uow:
        batch = batch_ingest.ingest_stored(uow.session, batch_uuid, settings)
        if batch is not None:
            send_next_step(uow, batch)
    if batch is not None:
        with unit_of_work() as uow:  # a big ingest: give the planner fresh statistics
            lines_repo.analyze(uow.session)
        log.info(
            "batches.validated",
            batch_id=batch_id,
            status=batch.status,
            lines=batch.total_items,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )


@dramatiq.actor(
    actor_name="batches.apply_chunk",
    queue_name="batches",
    time_limit=_settings.batch_time_limit_ms,
    on_dead_letter=record_chunk_dead_letter,
)
def apply_chunk(batch_id: str, start_line: int) -> None:
    """Apply the batch's chunks from `start_line`, one DB transaction each, for up to
    LEDGERQ_BATCH_MESSAGE_BUDGET_SECONDS; then send a message for the rest."""
    settings = get_settings()
    deadline = time.monotonic() + settings.batch_message_budget_s
    line: int | None = _resume_line(uuid.UUID(batch_id), start_line)
    while line is not None:
        started = time.perf_counter()
        try:
            with unit_of_work() as uow:
                outcome = batch_posting.apply_chunk(
                    uow.session, uuid.UUID(batch_id), line, chunk_size=settings.batch_chunk_size
                )
                handed_over = outcome.next_line is not None and time.monotonic() >= deadline
                if handed_over:
                    uow.enqueue(apply_chunk, batch_id=batch_id, start_line=outcome.next_line)
        except Exception:
            _count_chunk_failure(uuid.UUID(batch_id))
            raise  # retried after a backoff, or dead-lettered, by Dramatiq
        _observe(batch_id, line, outcome, time.perf_counter() - started)
        line = None if handed_over else outcome.next_line


def _count_chunk_failure(batch_id: uuid.UUID) -> None:
    """The sweeper must wait out the retry this failure earns (batches_repo.stale)."""
    try:
        with unit_of_work() as uow:
            batches_repo.count_chunk_failure(uow.session, batch_id)
    except Exception as error:  # the original failure matters more; the count is advisory
        log.warning("batches.failure_not_counted", batch_id=str(batch_id), error=str(error)[:200])


def _resume_line(batch_id: uuid.UUID, start_line: int) -> int:
    """Where this message's work starts: the batch's cursor when it has moved past
    `start_line`. A retry re-sends the message's original arguments, yet the chunks this
    message applied before failing are committed; starting at the old line would no-op
    and leave the batch to the stalled-batch sweeper. (Never backwards: the cursor only
    grows, and each chunk is applied under the batch's advisory lock.)"""
    with unit_of_work() as uow:
        batch = batches_repo.get(uow.session, batch_id)
        if batch is not None and batch.status == "processing" and batch.next_line > start_line:
            return batch.next_line
    return start_line


def _observe(batch_id: str, line: int, outcome: batch_posting.ChunkOutcome, elapsed: float) -> None:
    if outcome.status == "applied":
        CHUNK_SECONDS.observe(elapsed)
        LINES_APPLIED.labels("completed").inc(outcome.completed)
        LINES_APPLIED.labels("failed").inc(outcome.failed)
    log.info(
        "batches.chunk_applied",
        batch_id=batch_id,
        start_line=line,
        outcome=outcome.status,
        completed=outcome.completed,
        failed=outcome.failed,
        skipped=outcome.skipped,
        batch_status=outcome.batch_status,
        ms=round(elapsed * 1000, 1),
    )


@dramatiq.actor(actor_name="batches.release_due", queue_name="maintenance", retry_when=never_retry)
def release_due() -> None:
    release_due_batches()


@dramatiq.actor(actor_name="batches.sweep_stalled", queue_name="maintenance", retry_when=never_retry)
def sweep_stalled() -> None:
    resend_stalled()


def release_due_batches() -> int:
    """The tick's work: scheduled batches whose time has come start processing; how many."""
    settings = get_settings()
    with unit_of_work() as uow:
        released = batches_service.release_due(
            uow.session, now=database_now(uow.session), limit=settings.sweeper_batch_size
        )
        for batch in released:
            send_next_step(uow, batch)
    if released:
        log.info("batches.released", count=len(released))
    return len(released)


def resend_stalled() -> int:
    """The tick's work: re-send the next step of batches nobody touched for a while (the message was
    lost: Redis down at commit time, a crash between commit and send). A duplicate of a
    step still running is a no-op (advisory lock); of a finished one too (cursor)."""
    settings = get_settings()
    with unit_of_work() as uow:
        stale = batches_repo.stale(
            uow.session,
            statuses=("received", "validating", "processing"),
            idle_s=settings.batch_stale_after_s,
            limit=settings.sweeper_batch_size,
            min_backoff_s=settings.worker_min_backoff_ms / 1000,
            max_backoff_s=settings.worker_max_backoff_ms / 1000,
        )
        for batch_id, _ in stale:
            batch = batches_repo.get(uow.session, batch_id)
            if batch is not None:
                send_next_step(uow, batch)
    if stale:
        BATCHES_RESENT.inc(len(stale))
        log.warning("batches.resent", count=len(stale))
    return len(stale)
