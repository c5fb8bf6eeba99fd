"""Batches: submitting a file (or JSON items), validating every line into pending
transactions, cancelling, releasing scheduled batches, and dry runs.

A batch is recorded in one DB transaction with all its lines accounted for, or not at
all. Small files are validated inside the upload request; big ones are stored in
`batch_uploads` (status `received`) and validated by the `batches.ingest` actor, which
records every line in one transaction. Sending messages is the caller's job
(`workers.batches.send_next_step`, after commit): `db` imports no process package.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from db import idempotency
from db.audit import repository as audit
from db.batches import line_repository as lines_repo
from db.batches import repository as batches_repo
from db.batches import states
from db.batches.format import FileRejected, Record, UploadScan, csv_records, json_records
from db.batches.ingest import INGEST_BLOCK, blocks, ingest
from db.batches.validation import LineValidator, Rejected
from db.core.config import Settings
from db.core.errors import Conflict, NotFound, PayloadTooLarge, ValidationFailed
from db.core.logs import get_logger
from db.core.principal import Principal
from db.idempotency import Submitted
from db.models import Batch
from db.transactions.service import check_horizon

log = get_logger(__name__)

# Size of one stored piece of an upload.
UPLOAD_PART_BYTES = 1024 * 1024


@dataclass(frozen=True)
class BatchRequest:
    mode: str = "independent"
    scheduled_for: datetime | None = None
    reference: str | None = None
    filename: str | None = None
    source: str = "api"


@dataclass
class Upload:
    """A scanned upload: CSV bytes (re-readable through `open_chunks`) or JSON items."""

    format: str  # csv | json
    sha256: str
    size: int
    lines: int
    open_chunks: Callable[[], Iterator[bytes]] | None = None
    items: list[Any] | None = None

    def records(self, settings: Settings) -> Iterator[Record]:
        if self.format == "json":
            return json_records(self.items or [])
        assert self.open_chunks is not None
        return csv_records(self.open_chunks(), settings.batch_max_line_bytes)


def file_rejected(error: FileRejected) -> PayloadTooLarge | ValidationFailed:
    """The API error for a whole-file problem: 413 over a limit, else 422 on `file`."""
    if error.too_large:
        return PayloadTooLarge(error.message)
    return ValidationFailed.field("file", error.message)


def scan_csv(open_chunks: Callable[[], Iterator[bytes]], settings: Settings) -> Upload:
    """One streaming pass: size and line limits, header, SHA-256 (FileRejected if the
    file as a whole is unusable)."""
    scan = UploadScan(settings.batch_max_bytes, settings.batch_max_lines, settings.batch_max_line_bytes)
    for chunk in open_chunks():
        scan.feed(chunk)
    sha256 = scan.finish()
    return Upload("csv", sha256, scan.size, scan.lines, open_chunks=open_chunks)


def scan_json(items: Any, settings: Settings) -> Upload:
    if not isinstance(items, list) or not items:
        raise ValidationFailed.field("items", "must be a non-empty list of transfer objects")
    if len(items) > settings.batch_max_lines:
        raise PayloadTooLarge(
            f"{len(items)} items is more than the limit of {settings.batch_max_lines} items "
            "(LEDGERQ_BATCH_MAX_LINES)"
        )
    canonical = json.dumps(items, sort_keys=True, separators=(",", ":"), default=str).encode()
    return Upload("json", hashlib.sha256(canonical).hexdigest(), len(canonical), len(items), items=items)


def _fingerprint(request: BatchRequest, upload: Upload) -> str:
    """What makes a retry with the same Idempotency-Key a replay."""
    canonical = json.dumps(
        {
            "content": upload.sha256,
            "mode": request.mode,
            "scheduled_for": request.scheduled_for.isoformat() if request.scheduled_for else None,
            "reference": request.reference,
        },
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit(
    session: Session,
    principal: Principal,
    request: BatchRequest,
    upload: Upload,
    *,
    idempotency_key: str | None,
    settings: Settings,
    request_id: str | None = None,
) -> Submitted[Batch]:
    """Record the batch (and, for small uploads, every line) in the caller's transaction."""
    fingerprint = _fingerprint(request, upload)
    if idempotency_key:
        existing = batches_repo.by_idempotency_key(session, principal.id, idempotency_key)
        if existing is not None:
            return _replay(existing, fingerprint)
    now = datetime.now(UTC)
    check_horizon(request.scheduled_for, now, settings, "scheduled_for")  # as for a transfer
    _refuse_duplicate(session, upload.sha256)

    values = {
        "id": uuid.uuid4(),
        "created_by": principal.id,
        "status": states.INITIAL,
        "mode": request.mode,
        "source": request.source,
        "content_format": upload.format,
        "filename": (request.filename or "")[:255] or None,
        "content_sha256": upload.sha256,
        "content_bytes": upload.size,
        "reference": request.reference,
        "scheduled_for": request.scheduled_for
        if request.scheduled_for and request.scheduled_for > now
        else None,
        "idempotency_key": idempotency_key,
        "request_hash": fingerprint,
        "request_id": request_id,
    }
    new_id = batches_repo.insert_batch(session, values)
    if new_id is None:  # lost a race against a concurrent twin, which committed
        if idempotency_key:
            existing = batches_repo.by_idempotency_key(session, principal.id, idempotency_key)
            if existing is not None:
                return _replay(existing, fingerprint)
        _refuse_duplicate(session, upload.sha256)
        raise Conflict("The batch conflicts with an existing one; retry.")
    audit.record(
        session,
        action="batch.submitted",
        entity_type="batch",
        entity_id=new_id,
        actor_id=principal.id,
        data={"mode": request.mode, "source": request.source, "sha256": upload.sha256, "lines": upload.lines},
        request_id=request_id,
    )
    batch = batches_repo.get(session, new_id)
    assert batch is not None
    if upload.format == "json" or upload.lines <= settings.batch_sync_ingest_max_lines:
        ingest(session, batch, upload.records(settings), settings)
    else:
        assert upload.open_chunks is not None
        for part, data in enumerate(_rechunk(upload.open_chunks(), UPLOAD_PART_BYTES)):
            batches_repo.add_upload_part(session, batch.id, part, data)
    session.flush()
    return idempotency.created(batch)


def _replay(existing: Batch, fingerprint: str) -> Submitted[Batch]:
    return idempotency.replay(existing, fingerprint, kind="batch", differs="batch")


def _refuse_duplicate(session: Session, sha256: str) -> None:
    first = batches_repo.live_by_content(session, sha256)
    if first is not None:
        raise Conflict(
            f"The same content was already submitted as batch {first.id} ({first.status}).",
            {"batch_id": str(first.id), "status": first.status},
        )


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def cancel(session: Session, principal: Principal, batch_id: uuid.UUID) -> Batch:
    """Cancel a batch before processing starts: every line that has not moved money
    becomes `cancelled`. 409 once processing has begun (or it is over)."""
    # The batch row first, then its lines: the lock order of every writer (the scheduled
    # release claims the row, then releases the lines). Waiting here for a release in
    # progress ends in 409 below, never in a deadlock.
    batch = batches_repo.get_for_update(session, batch_id)
    if batch is None:
        raise NotFound("batch not found")
    if batch.status not in states.CANCELLABLE:
        raise Conflict(
            f"The batch is {batch.status}; only a received, validating or scheduled batch can be cancelled.",
            {"status": batch.status},
        )
    lines_repo.mark_unfinished(
        session,
        batch.id,
        status="cancelled",
        message=f"the batch was cancelled by {principal.username or principal.id}",
    )
    states.cancel(batch)
    audit.record(
        session, action="batch.cancelled", entity_type="batch", entity_id=batch.id, actor_id=principal.id
    )
    session.flush()
    return batches_repo.get(session, batch.id) or batch


def reopen_dead_lettered(session: Session, batch_id: uuid.UUID, actor: Principal | None) -> tuple[Batch, int]:
    """An operator's retry of a batch a dead-lettered chunk ended: under the batch row's
    lock (then its lines, the lock order of every writer), its dead-lettered lines are
    `pending` again and the batch `processing`, resuming at its cursor (or at the first
    reopened line, if that is earlier). Returns the batch and how many lines reopened:
    0 means there was nothing to retry, and the batch is unchanged."""
    batch = batches_repo.get_for_update(session, batch_id)
    if batch is None:
        raise NotFound("batch not found")
    if batch.status != "processing" and batch.failure_code != "dead_lettered":
        return batch, 0
    lines = lines_repo.reopen_dead_lettered(session, batch.id)
    if not lines:
        return batch, 0
    if batch.status != "processing":
        states.reopen(batch)
    batch.next_line = min(batch.next_line, min(lines))
    audit.record(
        session,
        action="batch.reopened",
        entity_type="batch",
        entity_id=batch.id,
        actor_id=actor.id if actor else None,
        data={"lines": len(lines)},
    )
    session.flush()
    return batch, len(lines)


def release_due(session: Session, *, now: datetime, limit: int) -> list[Batch]:
    """Scheduled batches whose time has come become `processing` (SKIP LOCKED claim)."""
    released = []
    for batch_id in batches_repo.claim_due_scheduled(session, now=now, limit=limit):
        lines_repo.release_scheduled(session, batch_id)
        batch = batches_repo.get(session, batch_id)
        assert batch is not None
        states.release(batch)
        audit.record(session, action="batch.released", entity_type="batch", entity_id=batch_id)
        released.append(batch)
    session.flush()
    return released


@dataclass
class DryRunReport:
    total_items: int = 0
    accepted: int = 0
    rejected: int = 0
    rejected_items: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False
    content_sha256: str = ""
    duplicate_of: uuid.UUID | None = None


def dry_run(session: Session, upload: Upload, settings: Settings) -> DryRunReport:
    """Everything `ingest` would decide about each line, recording nothing (the caller
    rolls back: a system account created on the way is not kept either)."""
    report = DryRunReport(content_sha256=upload.sha256)
    first = batches_repo.live_by_content(session, upload.sha256)
    report.duplicate_of = first.id if first else None
    validator = LineValidator(session, settings)
    for block in blocks(upload.records(settings), INGEST_BLOCK):
        for result in validator.validate(block):
            report.total_items += 1
            if isinstance(result, Rejected):
                report.rejected += 1
                if len(report.rejected_items) < settings.batch_dry_run_max_reported:
                    report.rejected_items.append(
                        {"line": result.line, "code": result.code, "reason": result.reason, "raw": result.raw}
                    )
                else:
                    report.truncated = True
            else:
                report.accepted += 1
    return report
