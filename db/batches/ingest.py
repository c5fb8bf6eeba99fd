"""Validating a batch's lines and recording every one of them, in one DB transaction:
accepted lines as `pending` (or `scheduled`) transactions with `batch_id`/`batch_line`,
rejected ones with their reason. Runs inside the upload request for small files and in
the `batches.ingest` actor for stored big ones.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterable, Iterator
from itertools import islice

from sqlalchemy.orm import Session

from db.audit import repository as audit
from db.batches import line_repository as lines_repo
from db.batches import repository as batches_repo
from db.batches import states
from db.batches.format import FileRejected, Record, csv_records
from db.batches.validation import Accepted, LineValidator
from db.core.config import Settings
from db.core.logs import get_logger
from db.events import outbox
from db.models import Batch

log = get_logger(__name__)

# Lines validated (and written with one COPY per table) at a time.
INGEST_BLOCK = 5000


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


def blocks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
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
    for block in blocks(records, INGEST_BLOCK):
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
        lines_repo.copy_transactions(session, tx_rows)
        outbox.record(session, outbox.transactions_by_id(session, [row[0] for row in tx_rows], created=True))
        lines_repo.copy_rejected(session, rejected_rows)

    # A cancel may have arrived while the lines were validated: look under the lock.
    batch = batches_repo.get_for_update(session, batch.id) or batch
    batch.total_items = accepted + rejected
    batch.pending_count = accepted
    batch.rejected_count = rejected
    batch.last_line = last_line
    session.flush()
    if batch.status == "cancelled":
        lines_repo.mark_unfinished(session, batch.id, status="cancelled", message="the batch was cancelled")
    elif accepted + rejected == 0:
        states.fail(batch, "no_lines", "the file has no lines")
    elif batch.mode == "atomic" and rejected:
        lines_repo.mark_unfinished(
            session,
            batch.id,
            status="cancelled",
            message=f"not applied: {rejected} line(s) of the atomic batch were rejected",
        )
        states.fail(
            batch, "lines_rejected", f"{rejected} line(s) rejected; nothing in the atomic batch moved money"
        )
    elif accepted == 0:
        states.fail(batch, "nothing_applied", f"every line ({rejected}) was rejected")
    else:
        states.validated(batch)
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
    try:
        parts = batches_repo.upload_parts(session, batch_id)  # stored uploads are CSV
        return ingest(session, batch, csv_records(parts, settings.batch_max_line_bytes), settings)
    except FileRejected as error:  # checked at upload time; only a changed limit gets here
        batch = batches_repo.get_for_update(session, batch_id) or batch
        if batch.status != "cancelled":  # a cancel that came first stands
            states.fail(batch, "file_rejected", error.message)
        batches_repo.delete_upload(session, batch_id)
        return batch
