"""Finance batches: POST a CSV file (multipart) or JSON items -> 202 with the batch;
every line is validated (rejected ones kept with their reason) and applied by chunk
actors; status, items and results.csv follow it. `?dry_run=true` only validates."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from flask import Response, current_app, g, jsonify, request
from flask.views import MethodView
from marshmallow import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from api.batches.schemas import (
    BatchItemPageSchema,
    BatchJsonSchema,
    BatchListArgsSchema,
    BatchMultipartSchema,
    BatchOptionsSchema,
    BatchPageSchema,
    BatchReverseSchema,
    BatchSchema,
    DryRunReportSchema,
    ItemArgsSchema,
    SubmitArgsSchema,
    item_view,
)
from api.extensions import Blueprint
from api.extensions.auth import current_principal
from api.extensions.database import get_session, get_uow
from api.extensions.input_guard import parse_checked_json
from db.batches import line_repository as lines_repo
from db.batches import repository as batches_repo
from db.batches import reversal as batches_reversal
from db.batches import service as batches_service
from db.batches.format import FileRejected
from db.core.config import Settings
from db.core.errors import InvalidJson, NotFound, PayloadTooLarge, ValidationFailed
from db.models import Batch
from db.session import session_factory

blp = Blueprint("batches", __name__, url_prefix="/batches", description="Finance bulk files (finance/admin)")

FINANCE = ("finance", "admin")
READ_BYTES = 1024 * 1024
# results.csv reads this many line numbers per query.
RESULTS_WINDOW = 5000
# Multipart framing and the small form fields around the file.
MULTIPART_SLACK = 64 * 1024
RESULT_COLUMNS = (
    "line",
    "status",
    "transaction_id",
    "type",
    "from_account_id",
    "to_account_id",
    "amount",
    "currency",
    "reference",
    "failure_code",
    "failure_message",
)
_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": BatchMultipartSchema},
            "application/json": {"schema": BatchJsonSchema},
        },
    }
}


def _settings() -> Settings:
    return current_app.config["LEDGERQ_SETTINGS"]


def _options(data: dict) -> batches_service.BatchRequest:
    try:
        options = BatchOptionsSchema().load(data)
    except ValidationError as error:
        raise ValidationFailed("The request has invalid fields.", error.normalized_messages()) from None
    return batches_service.BatchRequest(**options)


def _read_multipart(settings: Settings) -> tuple[batches_service.Upload, batches_service.BatchRequest]:
    limit = settings.batch_max_bytes
    too_large = PayloadTooLarge(
        f"The upload is larger than the limit of {limit} bytes (LEDGERQ_BATCH_MAX_BYTES).",
        {"limit_bytes": limit},
    )
    # Per request (Flask 3.1): the app-wide MAX_CONTENT_LENGTH is for JSON bodies.
    request.max_content_length = limit + MULTIPART_SLACK
    if request.content_length and request.content_length > limit + MULTIPART_SLACK:
        raise too_large
    try:
        files, form = request.files, request.form
    except RequestEntityTooLarge:
        raise too_large from None
    file = files.get("file")
    if file is None:
        raise ValidationFailed.field("file", "Missing data for required field (multipart field `file`).")
    _refuse_hostile_filename(file.filename)
    stream = file.stream

    def open_chunks() -> Iterator[bytes]:
        stream.seek(0)
        while chunk := stream.read(READ_BYTES):
            yield chunk

    options = {k: v for k, v in form.items() if k in ("mode", "scheduled_for", "reference") and v != ""}
    batch_request = _options(options)
    try:
        upload = batches_service.scan_csv(open_chunks, settings)
    except FileRejected as error:
        raise batches_service.file_rejected(error) from None
    return upload, batches_service.BatchRequest(
        mode=batch_request.mode,
        scheduled_for=batch_request.scheduled_for,
        reference=batch_request.reference,
        filename=file.filename,
    )


def _refuse_hostile_filename(name: str | None) -> None:
    """The name is kept as a label only, but one that is a path (traversal, absolute,
    Windows separators) or holds control characters is a client bug or an attack: 422."""
    if name and (
        "/" in name
        or "\\" in name
        or name.startswith(".")
        or any(ord(ch) < 32 for ch in name)
        or len(name) > 255
    ):
        raise ValidationFailed.field("file", "the file name must be a plain name, not a path")


def _read_json(settings: Settings) -> tuple[batches_service.Upload, batches_service.BatchRequest]:
    limit = settings.batch_max_json_bytes
    request.max_content_length = limit
    if request.content_length and request.content_length > limit:
        raise PayloadTooLarge(
            f"The JSON body is larger than the limit of {limit} bytes (LEDGERQ_BATCH_MAX_JSON_BYTES); "
            "upload big batches as a CSV file.",
            {"limit_bytes": limit},
        )
    body = parse_checked_json(request.get_data(cache=True))  # depth, NUL, duplicate keys
    if not isinstance(body, dict):
        raise InvalidJson("The request body is not a JSON object.")
    options = {k: v for k, v in body.items() if k != "items"}
    unknown = sorted(set(options) - {"mode", "scheduled_for", "reference"})
    if unknown:
        raise ValidationFailed(
            "The request has invalid fields.", {name: ["Unknown field."] for name in unknown}
        )
    return batches_service.scan_json(body.get("items"), settings), _options(options)


def _started(uow, result):
    """A new batch (not a replay) gets its next step sent after the commit: 202 + Location."""
    from workers.batches import send_next_step

    if not result.replayed:
        send_next_step(uow, result.record)
    uow.commit()
    return result.record, result, f"/api/v1/batches/{result.record.id}"


@blp.route("")
class Batches(MethodView):
    @blp.login_required(*FINANCE)
    @blp.doc(**_UPLOAD_DOC)
    @blp.arguments(SubmitArgsSchema, location="query")
    @blp.response(202, BatchSchema)
    @blp.alt_response(
        200, schema=DryRunReportSchema, description="?dry_run=true: the validation report", success=True
    )
    @blp.documents_errors(400, 409, 413, 422, 503)
    @blp.idempotent
    def post(self, args, idempotency_key):
        """Submit a batch of transactions (finance/admin).

        A multipart `file` (CSV: `from_account_id,to_account_id,amount,currency,reference`) or a
        JSON body with `items`. 202 with the batch (`Location` to poll); lines are validated and
        applied by workers. `mode=atomic` applies all lines or none; `independent` each on its
        own. `?dry_run=true` only validates (200 with the report, nothing recorded). 409 if the
        same content is already a live batch (`details.batch_id` points at it)."""
        settings = _settings()
        if request.mimetype == "multipart/form-data":
            upload, batch_request = _read_multipart(settings)
        elif request.is_json:
            upload, batch_request = _read_json(settings)
        else:
            raise ValidationFailed.field(
                "file", "Send a multipart/form-data `file` or a JSON body with `items`."
            )
        uow = get_uow()
        if args["dry_run"]:
            report = batches_service.dry_run(uow.session, upload, settings)
            uow.rollback()  # nothing is recorded, not even a system account
            return jsonify(DryRunReportSchema().dump(report))
        result = batches_service.submit(
            uow.session,
            current_principal(),
            batch_request,
            upload,
            idempotency_key=idempotency_key,
            settings=settings,
            request_id=g.request_id,
        )
        return _started(uow, result)

    @blp.login_required(*FINANCE)
    @blp.arguments(BatchListArgsSchema, location="query")
    @blp.keyset_page(lambda batch: batch.seq)
    @blp.response(200, BatchPageSchema)
    @blp.documents_errors(422)
    def get(self, args, page):
        """List batches, newest first (finance/admin).

        Optionally by `status`; cursor-paginated. Each batch carries its counters, which always
        add up to `total_items`."""
        rows = batches_repo.list_batches(
            get_session(), status=args["status"], created_by=None, before_seq=page.after, limit=page.limit
        )
        return page.of(rows)


def _batch(batch_id) -> Batch:
    batch = batches_repo.get(get_session(), batch_id)
    if batch is None:
        raise NotFound("batch not found")
    return batch


@blp.route("/<uuid:batch_id>")
class BatchById(MethodView):
    @blp.login_required(*FINANCE)
    @blp.response(200, BatchSchema)
    @blp.documents_errors(404)
    def get(self, batch_id):
        """One batch with its status and counters.

        The counters (pending, completed, failed, rejected, ...) always add up to `total_items`;
        poll until the status is final."""
        return _batch(batch_id)


@blp.route("/<uuid:batch_id>/items")
class BatchItems(MethodView):
    @blp.login_required(*FINANCE)
    @blp.arguments(ItemArgsSchema, location="query")
    @blp.keyset_page(lambda row: row.line_no)
    @blp.response(200, BatchItemPageSchema)
    @blp.documents_errors(404, 422)
    def get(self, args, batch_id, page):
        """The batch's lines in file order with their outcome.

        Each line's status, its transaction id once it has one, and the rejection or failure
        reason. `?status=` filters; cursor-paginated."""
        batch = _batch(batch_id)
        rows = lines_repo.item_page(
            get_session(), batch.id, status=args["status"], after_line=page.after, limit=page.limit
        )
        return page.of(rows, lambda lines: [item_view(row) for row in lines])


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value) -> str:
    """CSV cell; text that a spreadsheet would run as a formula gets a leading quote."""
    if value is None:
        return ""
    text = str(value)
    if text.startswith(_FORMULA_START) and not text.lstrip("-").replace(".", "", 1).isdigit():
        return "'" + text
    return text


@blp.route("/<uuid:batch_id>/results.csv")
class BatchResults(MethodView):
    @blp.login_required(*FINANCE)
    @blp.alt_response(
        200,
        success=True,
        content_type="text/csv",
        schema={"type": "string"},
        description=f"every input line in input order: {','.join(RESULT_COLUMNS)}",
    )
    @blp.documents_errors(404)
    def get(self, batch_id):
        """Every input line, in input order, with its outcome, as CSV (streamed).

        The line number, `status`, `transaction_id`, the line's fields and its
        `failure_code` / `failure_message`: the file to hand back to whoever sent the batch."""
        batch = _batch(batch_id)
        batch_id, last_line = batch.id, batch.last_line
        settings = _settings()

        def rows() -> Iterator[str]:
            # Its own session: the response streams after the request's unit of work closed.
            with session_factory(settings)() as session:
                buffer = io.StringIO()
                writer = csv.writer(buffer, lineterminator="\r\n")
                writer.writerow(RESULT_COLUMNS)
                for low in range(0, last_line + 1, RESULTS_WINDOW):
                    block = lines_repo.item_page(
                        session,
                        batch_id,
                        status=None,
                        after_line=low - 1,
                        before_line=low + RESULTS_WINDOW,
                        limit=RESULTS_WINDOW,
                    )
                    session.rollback()  # one short read transaction per window
                    for row in block:
                        item = item_view(row)
                        writer.writerow([_cell(item[column]) for column in RESULT_COLUMNS])
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()

        return Response(
            rows(),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}-results.csv"'},
        )


@blp.route("/<uuid:batch_id>/cancel")
class BatchCancel(MethodView):
    @blp.login_required(*FINANCE)
    @blp.response(200, BatchSchema)
    @blp.documents_errors(404, 409)
    def post(self, batch_id):
        """Cancel a batch before processing starts (finance/admin).

        Allowed while `received`, `validating` or `scheduled`; nothing of it is applied. 409
        `conflict` once processing has started."""
        uow = get_uow()
        batch = batches_service.cancel(uow.session, current_principal(), batch_id)
        uow.commit()
        return batch


@blp.route("/<uuid:batch_id>/reverse")
class BatchReverse(MethodView):
    @blp.login_required(*FINANCE)
    @blp.arguments(BatchReverseSchema, required=False)
    @blp.response(202, BatchSchema)
    @blp.documents_errors(404, 409, 422)
    @blp.idempotent
    def post(self, data, batch_id, idempotency_key):
        """Reverse a finished batch (finance/admin): 202 with a new batch of reversals.

        Its lines move back every completed line of the original (each a `reversal`
        transaction with `reverses` set, so the original line's transaction gains
        `reversed_by`), under the same rules and engine as any batch, in the original's
        `mode` unless `mode` is given. A line already reversed on its own is skipped: an item
        `rejected` with failure code `already_reversed` naming its reversal (counted as done:
        the reversal batch still ends `completed`). 409 `conflict` if the batch is not
        finished (`completed`, `completed_with_errors`, `failed`), has dead-lettered lines,
        completed nothing, is itself a reversal, or was already reversed: a batch is reversed
        at most once (a reversal batch that failed moved nothing and does not count)."""
        uow = get_uow()
        result = batches_reversal.reverse_batch(
            uow.session,
            current_principal(),
            batch_id,
            mode=(data or {}).get("mode"),
            idempotency_key=idempotency_key,
            request_id=g.request_id,
        )
        return _started(uow, result)
