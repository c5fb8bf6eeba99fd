from __future__ import annotations

import json

from marshmallow import Schema, ValidationError, fields, validate, validates

from api.extensions.schemas import DecimalString, PageArgsSchema, page_schema
from db.core.money import format_minor
from db.models import FAILURE_CODES, TRANSACTION_STATUSES, TRANSACTION_TYPES

_CURRENCY = validate.Regexp(r"^[A-Z]{3}$", error="ISO 4217 code, e.g. USD.")
MAX_METADATA_BYTES = 4096


class _MovementBase(Schema):
    amount = DecimalString(required=True, metadata={"example": "150.75"})
    currency = fields.String(required=True, validate=_CURRENCY)
    reference = fields.String(load_default=None, validate=validate.Length(max=255))
    scheduled_for = fields.AwareDateTime(
        load_default=None, format="iso", metadata={"description": "RFC 3339 with offset; future -> scheduled"}
    )


class TransferSchema(_MovementBase):
    from_account_id = fields.UUID(required=True)
    to_account_id = fields.UUID(required=True)
    metadata = fields.Dict(keys=fields.String(), load_default=dict)

    @validates("metadata")
    def _small_metadata(self, value, **kwargs):
        if len(json.dumps(value)) > MAX_METADATA_BYTES:
            raise ValidationError(f"Must be at most {MAX_METADATA_BYTES} bytes of JSON.")


class SingleAccountSchema(_MovementBase):
    account_id = fields.UUID(required=True)


class TransactionSchema(Schema):
    id = fields.UUID()
    type = fields.String(metadata={"enum": list(TRANSACTION_TYPES)})
    status = fields.String(metadata={"enum": list(TRANSACTION_STATUSES)})
    from_account_id = fields.UUID()
    to_account_id = fields.UUID()
    amount = fields.Function(
        lambda tx: format_minor(tx.amount_minor, tx.currency), metadata={"example": "150.75"}
    )
    currency = fields.String()
    reference = fields.String(allow_none=True)
    metadata = fields.Function(lambda tx: tx.metadata_)
    idempotency_key = fields.String(allow_none=True)
    failure_code = fields.String(
        allow_none=True,
        metadata={
            "enum": [*FAILURE_CODES, None],
            "description": "set when status is failed: the rule the worker refused it for",
        },
    )
    failure_message = fields.String(allow_none=True)
    scheduled_for = fields.DateTime(format="iso", allow_none=True)
    batch_id = fields.UUID(allow_none=True)
    schedule_id = fields.UUID(allow_none=True)
    scheduled_run_at = fields.DateTime(
        format="iso", allow_none=True, metadata={"description": "the standing order's run time this is"}
    )
    reverses = fields.UUID(allow_none=True)
    reversed_by = fields.Function(lambda tx: getattr(tx, "reversed_by", None))
    attempts = fields.Integer()
    created_at = fields.DateTime(format="iso")
    updated_at = fields.DateTime(format="iso")
    completed_at = fields.DateTime(format="iso", allow_none=True)


TransactionPageSchema = page_schema(TransactionSchema, "TransactionPage")


class WaitArgsSchema(Schema):
    wait = fields.Float(
        load_default=0, validate=validate.Range(min=0), metadata={"description": "long-poll seconds (max 30)"}
    )


class HistoryArgsSchema(PageArgsSchema):
    account_id = fields.UUID(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(TRANSACTION_STATUSES))
    type = fields.String(load_default=None, validate=validate.OneOf(TRANSACTION_TYPES))
    batch_id = fields.UUID(load_default=None)
    from_ = fields.AwareDateTime(data_key="from", load_default=None, format="iso")
    to = fields.AwareDateTime(load_default=None, format="iso")
