from __future__ import annotations

from datetime import UTC, datetime, timedelta

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from db.analytics.service import DEFAULT_RANGE_DAYS, MAX_RANGE_DAYS
from db.core.currencies import is_known_currency
from db.core.money import format_minor


class RangeArgsSchema(Schema):
    """`from` and `to`: UTC calendar days, both inclusive, at most MAX_RANGE_DAYS apart;
    by default the 30 days up to today."""

    from_ = fields.Date(
        data_key="from",
        load_default=None,
        metadata={"description": "first UTC day, inclusive (YYYY-MM-DD); default: `to` - 29 days"},
    )
    to = fields.Date(
        load_default=None,
        metadata={"description": "last UTC day, inclusive (YYYY-MM-DD); default: today (UTC)"},
    )

    @post_load
    def _range(self, data, **kwargs):
        data["to"] = data["to"] or datetime.now(UTC).date()
        data["from_"] = data["from_"] or data["to"] - timedelta(days=DEFAULT_RANGE_DAYS - 1)
        if data["from_"] > data["to"]:
            raise ValidationError("`from` is after `to`.", field_name="from")
        if data["to"] - data["from_"] >= timedelta(days=MAX_RANGE_DAYS):
            raise ValidationError(f"At most {MAX_RANGE_DAYS} days, both ends included.", field_name="to")
        return data


class DailyArgsSchema(RangeArgsSchema):
    currency = fields.String(
        load_default=None,
        validate=validate.Regexp(r"^[A-Z]{3}$", error="ISO 4217 code, e.g. USD."),
        metadata={"description": "only this currency (default: every currency)"},
    )

    @validates_schema
    def _known_currency(self, data, **kwargs):
        if data.get("currency") and not is_known_currency(data["currency"]):
            raise ValidationError("Unknown currency.", field_name="currency")


class DailyFigureSchema(Schema):
    """Dumps a `db.analytics.service.DailyFigure`."""

    date = fields.Function(lambda f: f.day.isoformat(), metadata={"type": "string", "format": "date"})
    currency = fields.Function(lambda f: f.currency, metadata={"type": "string"})
    count = fields.Function(
        lambda f: f.count, metadata={"type": "integer", "description": "transactions created that day"}
    )
    completed = fields.Function(
        lambda f: f.completed, metadata={"type": "integer", "description": "of them, completed (so far)"}
    )
    failed = fields.Function(
        lambda f: f.failed, metadata={"type": "integer", "description": "of them, failed (so far)"}
    )
    volume = fields.Function(
        lambda f: format_minor(f.volume_minor, f.currency),
        metadata={"type": "string", "description": "sum of the completed ones' amounts"},
    )


class DailyFiguresSchema(Schema):
    items = fields.List(fields.Nested(DailyFigureSchema), required=True)


class AccountFiguresSchema(Schema):
    """Dumps a `db.analytics.service.AccountFigures`."""

    account_id = fields.Function(lambda f: str(f.account.id), metadata={"type": "string"})
    currency = fields.Function(lambda f: f.account.currency, metadata={"type": "string"})
    from_ = fields.Function(
        lambda f: f.since.isoformat(), data_key="from", metadata={"type": "string", "format": "date"}
    )
    to = fields.Function(lambda f: f.until.isoformat(), metadata={"type": "string", "format": "date"})
    incoming = fields.Function(
        lambda f: format_minor(f.incoming_minor, f.account.currency),
        metadata={"type": "string", "description": "completed amounts credited to the account"},
    )
    outgoing = fields.Function(
        lambda f: format_minor(f.outgoing_minor, f.account.currency),
        metadata={"type": "string", "description": "completed amounts debited from the account"},
    )
    count = fields.Function(
        lambda f: f.count,
        metadata={"type": "integer", "description": "completed transactions that moved the account's money"},
    )
