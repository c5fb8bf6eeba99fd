from __future__ import annotations

import json

from marshmallow import Schema, ValidationError, fields, validate, validates

from api.extensions.schemas import DecimalString, PageArgsSchema, page_schema
from db.core.money import format_minor
from db.fx import quotes
from db.models import FAILURE_CODES, TRANSACTION_STATUSES, TRANSACTION_TYPES
from db.transactions.service import HOLD_MAX_EXPIRY_S

_CURRENCY = validate.Regexp(r"^[A-Z]{3}$", error="ISO 4217 code, e.g. USD.")
MAX_METADATA_BYTES = 4096


class _MovementBase(Schema):
    amount = DecimalString(required=True, metadata={"example": "150.75"})
    currency = fields.String(required=True, validate=_CURRENCY)
    reference = fields.String(load_default=None, validate=validate.Length(max=255))
    scheduled_for = fields.AwareDateTime(
        load_default=None, format="iso", metadata={"description": "RFC 3339 with offset; future -> scheduled"}
    )


class _WithMetadata(Schema):
    metadata = fields.Dict(keys=fields.String(), load_default=dict)

    @validates("metadata")
    def _small_metadata(self, value, **kwargs):
        if len(json.dumps(value)) > MAX_METADATA_BYTES:
            raise ValidationError(f"Must be at most {MAX_METADATA_BYTES} bytes of JSON.")


class TransferSchema(_MovementBase, _WithMetadata):
    from_account_id = fields.UUID(required=True)
    to_account_id = fields.UUID(required=True)


class ExchangeSchema(_WithMetadata):
    from_account_id = fields.UUID(required=True)
    to_account_id = fields.UUID(required=True, metadata={"description": "an account in another currency"})
    amount = DecimalString(required=True, metadata={"example": "150.75", "description": "in `currency`"})
    currency = fields.String(
        required=True, validate=_CURRENCY, metadata={"description": "the source account's currency"}
    )
    rate = DecimalString(
        load_default=None,
        metadata={
            "example": "1.0842",
            "description": "the rate you were quoted; if it is no longer current: 409 `rate_changed`",
        },
    )
    reference = fields.String(load_default=None, validate=validate.Length(max=255))


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
    # An exchange's figures, fixed at request time (null on other types); a reversal of
    # an exchange shows them mirrored, its `fee` the refunded one.
    to_amount = fields.Function(
        lambda tx: quotes.rendered(tx)["to_amount"],
        allow_none=True,
        metadata={"description": "exchange: what the target account receives, in `to_currency`"},
    )
    to_currency = fields.String(allow_none=True, metadata={"description": "exchange: the target's currency"})
    rate = fields.Function(
        lambda tx: quotes.rendered(tx)["rate"],
        allow_none=True,
        metadata={"description": "exchange: 1 `currency` = `rate` `to_currency`, a decimal string"},
    )
    fee = fields.Function(
        lambda tx: quotes.rendered(tx)["fee"],
        allow_none=True,
        metadata={
            "description": "exchange: the fee kept, in `currency` (a reversal: refunded, in `to_currency`)"
        },
    )
    rate_version = fields.Function(
        lambda tx: quotes.rendered(tx)["rate_version"],
        allow_none=True,
        metadata={"description": "exchange: the rate version applied (GET /fx/rates/{base}/{quote}/history)"},
    )
    # Holds (two-phase transfers); null on every other type.
    held_amount = fields.Function(
        lambda tx: _minor_or_none(tx.held_amount_minor, tx.currency),
        metadata={"type": "string", "nullable": True, "description": "a hold: what it still reserves"},
    )
    captured_amount = fields.Function(
        lambda tx: _minor_or_none(tx.captured_amount_minor, tx.currency),
        metadata={"type": "string", "nullable": True, "description": "a hold: what its capture moved"},
    )
    expires_at = fields.DateTime(
        format="iso", allow_none=True, metadata={"description": "a hold: when it is released if still held"}
    )
    captures = fields.UUID(
        allow_none=True, metadata={"description": "a capture: the hold it moves money for"}
    )


def _minor_or_none(amount, currency):
    return format_minor(amount, currency) if amount is not None else None


class HoldSchema(TransferSchema):
    """A transfer's fields (less `scheduled_for`: a hold reserves now) and its expiry."""

    class Meta:
        exclude = ("scheduled_for",)

    expires_in_seconds = fields.Integer(
        load_default=None,
        strict=True,
        validate=validate.Range(min=1, max=HOLD_MAX_EXPIRY_S),
        metadata={"description": "1 s to 30 days; default 7 days (604800)"},
    )


class CaptureSchema(Schema):
    amount = DecimalString(
        load_default=None, metadata={"example": "100.00", "description": "default: all the hold reserves"}
    )


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
