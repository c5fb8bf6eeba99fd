from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from api.extensions.schemas import PageArgsSchema, page_schema
from db.batches.format import COLUMNS
from db.core.money import format_minor
from db.models import BATCH_MODES, BATCH_STATUSES

ITEM_STATUSES = ("pending", "completed", "failed", "rejected", "cancelled", "dead_lettered")


class BatchOptionsSchema(Schema):
    """Form fields of a multipart upload (or the JSON body's fields besides `items`)."""

    mode = fields.String(load_default="independent", validate=validate.OneOf(BATCH_MODES))
    scheduled_for = fields.AwareDateTime(
        load_default=None, format="iso", metadata={"description": "RFC 3339 with offset; future -> scheduled"}
    )
    reference = fields.String(load_default=None, validate=validate.Length(max=255))


class BatchItemInputSchema(Schema):
    """One JSON item (the same fields as a CSV line; amounts are decimal strings)."""

    from_account_id = fields.String(metadata={"description": "empty or absent: a credit"})
    to_account_id = fields.String(metadata={"description": "empty or absent: a debit"})
    amount = fields.String(required=True, metadata={"example": "150.75"})
    currency = fields.String(required=True)
    reference = fields.String(metadata={"description": "unique within the batch"})


class BatchJsonSchema(BatchOptionsSchema):
    items = fields.List(fields.Nested(BatchItemInputSchema), required=True)


class BatchMultipartSchema(BatchOptionsSchema):
    file = fields.Raw(
        required=True,
        metadata={
            "type": "string",
            "format": "binary",
            "description": f"CSV with header {','.join(COLUMNS)}",
        },
    )


class SubmitArgsSchema(Schema):
    dry_run = fields.Boolean(
        load_default=False,
        metadata={"description": "validate every line and return the report (200); record nothing"},
    )


def _counts(batch) -> dict[str, int]:
    return {
        "pending": batch.pending_count,
        "completed": batch.completed_count,
        "failed": batch.failed_count,
        "rejected": batch.rejected_count,
        "cancelled": batch.cancelled_count,
        "dead_lettered": batch.dead_lettered_count,
    }


class CountsSchema(Schema):
    pending = fields.Integer(metadata={"description": "not decided yet (includes scheduled lines)"})
    completed = fields.Integer()
    failed = fields.Integer()
    rejected = fields.Integer()
    cancelled = fields.Integer()
    dead_lettered = fields.Integer()


class BatchSchema(Schema):
    id = fields.UUID()
    status = fields.String(metadata={"enum": list(BATCH_STATUSES)})
    mode = fields.String(metadata={"enum": list(BATCH_MODES)})
    source = fields.String(metadata={"enum": ["api", "inbox"]})
    filename = fields.String(allow_none=True)
    content_sha256 = fields.String(allow_none=True)
    reference = fields.String(allow_none=True)
    scheduled_for = fields.DateTime(format="iso", allow_none=True)
    total_items = fields.Integer(metadata={"description": "every non-blank input line; counts add up to it"})
    counts = fields.Function(_counts, metadata={"description": "sum == total_items, always"})
    progress = fields.Function(
        lambda b: round((b.total_items - b.pending_count) / b.total_items, 4) if b.total_items else 0.0,
        metadata={"description": "share of lines with a final outcome (0..1)"},
    )
    failure_code = fields.String(allow_none=True)
    failure_message = fields.String(allow_none=True)
    created_by = fields.UUID()
    idempotency_key = fields.String(allow_none=True)
    created_at = fields.DateTime(format="iso")
    updated_at = fields.DateTime(format="iso")
    started_at = fields.DateTime(format="iso", allow_none=True)
    completed_at = fields.DateTime(format="iso", allow_none=True)
    reverses = fields.UUID(
        allow_none=True,
        metadata={"description": "a batch reversal: the batch whose completed lines it moves back"},
    )


class BatchReverseSchema(Schema):
    """The optional body of POST /batches/{id}/reverse."""

    mode = fields.String(
        load_default=None,
        validate=validate.OneOf(BATCH_MODES),
        metadata={"description": "atomic | independent; absent: the original batch's mode"},
    )


BatchPageSchema = page_schema(BatchSchema, "BatchPage")


class BatchListArgsSchema(PageArgsSchema):
    status = fields.String(load_default=None, validate=validate.OneOf(BATCH_STATUSES))


class ItemArgsSchema(PageArgsSchema):
    status = fields.String(load_default=None, validate=validate.OneOf(ITEM_STATUSES))


def item_view(row: Any) -> dict[str, Any]:
    """One line's outcome from a `db.batches.repository.item_page` row."""
    if row.transaction_id is None:
        raw = row.raw or {}
        return {
            "line": row.line_no,
            "status": "rejected",
            "transaction_id": None,
            "type": None,
            "from_account_id": raw.get("from_account_id") or None,
            "to_account_id": raw.get("to_account_id") or None,
            "amount": raw.get("amount") or None,
            "currency": raw.get("currency") or None,
            "reference": raw.get("reference") or None,
            "raw_line": raw.get("line"),
            "failure_code": row.reject_code,
            "failure_message": row.reject_reason,
        }
    return {
        "line": row.line_no,
        "status": "pending" if row.status == "scheduled" else row.status,
        "transaction_id": row.transaction_id,
        "type": row.type,
        "from_account_id": None if row.type == "credit" else row.from_account_id,
        "to_account_id": None if row.type == "debit" else row.to_account_id,
        "amount": format_minor(row.amount_minor, row.currency),
        "currency": row.currency,
        "reference": row.reference,
        "raw_line": None,
        "failure_code": row.failure_code,
        "failure_message": row.failure_message,
    }


class BatchItemSchema(Schema):
    line = fields.Integer(metadata={"description": "line number in the file (the header is line 1)"})
    status = fields.String(metadata={"enum": list(ITEM_STATUSES)})
    transaction_id = fields.UUID(allow_none=True)
    type = fields.String(
        allow_none=True,
        metadata={
            "enum": ["transfer", "credit", "debit", "reversal"],
            "description": "reversal: a batch reversal's line",
        },
    )
    from_account_id = fields.String(allow_none=True)
    to_account_id = fields.String(allow_none=True)
    amount = fields.String(allow_none=True)
    currency = fields.String(allow_none=True)
    reference = fields.String(allow_none=True)
    raw_line = fields.String(
        allow_none=True, metadata={"description": "the line as read, when it had no fields"}
    )
    failure_code = fields.String(
        allow_none=True,
        metadata={
            "description": "why the line was rejected or failed; `already_reversed`: a batch "
            "reversal skipped a line already reversed on its own"
        },
    )
    failure_message = fields.String(allow_none=True)


BatchItemPageSchema = page_schema(BatchItemSchema, "BatchItemPage")


class RejectedLineSchema(Schema):
    line = fields.Integer()
    code = fields.String()
    reason = fields.String()
    raw = fields.Dict(allow_none=True)


class DryRunReportSchema(Schema):
    dry_run = fields.Constant(True)
    total_items = fields.Integer()
    accepted = fields.Integer()
    rejected = fields.Integer()
    rejected_items = fields.List(fields.Nested(RejectedLineSchema))
    truncated = fields.Boolean(
        metadata={"description": "more rejected lines than LEDGERQ_BATCH_DRY_RUN_MAX_REPORTED"}
    )
    content_sha256 = fields.String()
    duplicate_of = fields.UUID(
        allow_none=True,
        metadata={"description": "a live batch with the same content: submitting would be 409"},
    )
