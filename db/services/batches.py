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
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy import func
from sqlalchemy.orm import Session

from db.batch_format import FileRejected, Record, UploadScan, csv_records, json_records
from db.config import Settings
from db.errors import Conflict, IdempotencyKeyReused, NotFound, PayloadTooLarge, ValidationFailed
from db.logs import get_logger
from db.models import Batch
from db.principal import Principal
from db.repositories import audit
from db.repositories import batches as batches_repo
from db.services.batch_validation import Accepted, LineValidator, Rejected

log = get_logger(__name__)

# Lines validated (and written with one COPY per table) at a time.
INGEST_BLOCK = 5000
# Size of one stored piece of an upload.
UPLOAD_PART_BYTES = 1024 * 1024
CANCELLABLE = ("received", "validating", "scheduled")


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


@dataclass(frozen=True)
class Submitted:
    batch: Batch
    replayed: bool


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
) -> Submitted:
    """Record the batch (and, for small uploads, every line) in the caller's transaction."""
    fingerprint = _fingerprint(request, upload)
    if idempotency_key:
        existing = batches_repo.by_idempotency_key(session, principal.id, idempotency_key)
        if existing is not None:
            return _replay(existing, fingerprint)
    _refuse_duplicate(session, upload.sha256)

    now = datetime.now(UTC)
    values = {
        "id": uuid.uuid4(),
        "created_by": principal.id,
        "status": "received",
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
    return Submitted(batch, replayed=False)


def _replay(existing: Batch, fingerprint: str) -> Submitted:
    if existing.request_hash != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different batch.", {"batch_id": str(existing.id)}
        )
    return Submitted(existing, replayed=True)


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


class OrderedIds:
    """UUIDs in the version-7 layout (48-bit millisecond timestamp first), consecutive
    within one batch: a batch's rows land side by side in every index keyed on the id
    instead of on a million random pages. Still opaque and unguessable to clients (62
    random bits, plus 12 more per batch)."""

    def __init__(self) -> None:
        millis = int(time.time() * 1000) & ((1 << 48) - 1)
        self._high = (millis << 80) | (0x7 << 76) | (secrets.randbits(12) << 64) | (0b10 << 62)
        self._low = secrets.randbits(61)  # room to count up without overflowing 62 bits

    def next(self) -> uuid.UUID:
        self._low += 1
        return uuid.UUID(int=self._high | self._low)


def _blocks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    iterator = iter(records)
    while block := list(islice(iterator, size)):
        yield block


def ingest(session: Session, batch: Batch, records: Iterable[Record], settings: Settings) -> Batch:
    """Validate every line and record it: accepted lines as `pending` (or `scheduled`)
    transactions with `batch_id`, rejected ones with their reason. Then decide what
    the batch does next (processing, scheduled, failed, cancelled)."""
    tx_status = "scheduled" if batch.scheduled_for else "pending"
    ids = OrderedIds()
    validator = LineValidator(session, settings)
    accepted = rejected = last_line = 0
    for block in _blocks(records, INGEST_BLOCK):
        last_line = block[-1].line
        tx_rows, rejected_rows = [], []
        for result in validator.validate(block):
            if isinstance(result, Accepted):
                tx_id = ids.next()
                tx_rows.append(
                    (
                        tx_id,
                        result.type,
                        tx_status,
                        result.from_account_id,
                        result.to_account_id,
                        result.amount_minor,
                        result.currency,
                        result.reference,
                        batch.created_by,
                        batch.request_id,
                        batch.scheduled_for,
                        batch.id,
                        result.line,
                    )
                )
                accepted += 1
            else:
                rejected_rows.append((batch.id, result.line, result.code, result.reason, result.raw))
                rejected += 1
        batches_repo.copy_transactions(session, tx_rows)
        batches_repo.copy_rejected(session, rejected_rows)

    # A cancel may have arrived while the lines were validated: look under the lock.
    batch = batches_repo.get_for_update(session, batch.id) or batch
    batch.total_items = accepted + rejected
    batch.pending_count = accepted
    batch.rejected_count = rejected
    batch.last_line = last_line
    session.flush()
    if batch.status == "cancelled":
        batches_repo.mark_unfinished(session, batch.id, status="cancelled", message="the batch was cancelled")
    elif accepted + rejected == 0:
        _finish(batch, "failed", "no_lines", "the file has no lines")
    elif batch.mode == "atomic" and rejected:
        batches_repo.mark_unfinished(
            session,
            batch.id,
            status="cancelled",
            message=f"not applied: {rejected} line(s) of the atomic batch were rejected",
        )
        _finish(
            batch,
            "failed",
            "lines_rejected",
            f"{rejected} line(s) rejected; nothing in the atomic batch moved money",
        )
    elif accepted == 0:
        _finish(batch, "failed", "nothing_applied", f"every line ({rejected}) was rejected")
    elif batch.scheduled_for:
        batch.status = "scheduled"
    else:
        batch.status = "processing"
        batch.started_at = func.now()
    batches_repo.delete_upload(session, batch.id)
    audit.record(
        session,
        action="batch.validated",
        entity_type="batch",
        entity_id=batch.id,
        data={"accepted": accepted, "rejected": rejected, "status": batch.status},
        request_id=batch.request_id,
    )
    session.flush()
    batch = batches_repo.get(session, batch.id) or batch  # counters the trigger moved
    log.info(
        "batches.ingested", batch_id=str(batch.id), accepted=accepted, rejected=rejected, status=batch.status
    )
    return batch


def _finish(batch: Batch, status: str, code: str | None, message: str | None) -> None:
    batch.status = status
    batch.failure_code = code
    batch.failure_message = message
    batch.completed_at = func.now()


def ingest_stored(session: Session, batch_id: uuid.UUID, settings: Settings) -> Batch | None:
    """The worker's side of a big upload: validate the stored bytes. None when there is
    nothing to do (already ingested, or another worker is on it)."""
    if not batches_repo.try_lock(session, batch_id):
        return None
    batch = batches_repo.get(session, batch_id)
    if batch is None or batch.status not in ("received", "validating", "cancelled"):
        return None
    if not batches_repo.has_upload(session, batch_id):
        return None  # already ingested (the upload is deleted in the same transaction)
    upload = Upload(
        batch.content_format,
        batch.content_sha256 or "",
        batch.content_bytes,
        0,
        open_chunks=lambda: batches_repo.upload_parts(session, batch_id),
    )
    try:
        return ingest(session, batch, upload.records(settings), settings)
    except FileRejected as error:  # checked at upload time; only a changed limit gets here
        _finish(batch, "failed", "file_rejected", error.message)
        batches_repo.delete_upload(session, batch_id)
        return batch


def cancel(session: Session, principal: Principal, batch_id: uuid.UUID) -> Batch:
    """Cancel a batch before processing starts: every line that has not moved money
    becomes `cancelled`. 409 once processing has begun (or it is over)."""
    batch = batches_repo.get(session, batch_id)
    if batch is None:
        raise NotFound("batch not found")
    if batch.status not in CANCELLABLE:
        raise Conflict(
            f"The batch is {batch.status}; only a received, validating or scheduled batch can be cancelled.",
            {"status": batch.status},
        )
    # Transaction rows first, then the batch row: the lock order of every other writer.
    batches_repo.mark_unfinished(
        session,
        batch.id,
        status="cancelled",
        message=f"the batch was cancelled by {principal.username or principal.id}",
    )
    batch = batches_repo.get_for_update(session, batch.id)
    assert batch is not None
    if batch.status not in CANCELLABLE:  # processing started meanwhile: the caller rolls back
        raise Conflict(
            f"The batch is {batch.status}; it can no longer be cancelled.", {"status": batch.status}
        )
    _finish(batch, "cancelled", None, None)
    audit.record(
        session, action="batch.cancelled", entity_type="batch", entity_id=batch.id, actor_id=principal.id
    )
    session.flush()
    return batches_repo.get(session, batch.id) or batch


def release_due(session: Session, *, now: datetime, limit: int) -> list[Batch]:
    """Scheduled batches whose time has come become `processing` (SKIP LOCKED claim)."""
    released = []
    for batch_id in batches_repo.claim_due_scheduled(session, now=now, limit=limit):
        batches_repo.release_scheduled(session, batch_id)
        batch = batches_repo.get(session, batch_id)
        assert batch is not None
        batch.status = "processing"
        batch.started_at = func.now()
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
    for block in _blocks(upload.records(settings), INGEST_BLOCK):
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
