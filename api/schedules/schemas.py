from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.extensions.schemas import INT4_MAX, DecimalString, PageArgsSchema, page_schema
from db.core.money import format_minor
from db.models import MISFIRE_POLICIES, SCHEDULE_STATUSES


class ScheduleCreateSchema(Schema):
    from_account_id = fields.UUID(required=True)
    to_account_id = fields.UUID(required=True)
    amount = DecimalString(required=True, metadata={"example": "25.00"})
    currency = fields.String(
        required=True, validate=validate.Regexp(r"^[A-Z]{3}$", error="ISO 4217 code, e.g. USD.")
    )
    cron = fields.String(
        load_default=None,
        validate=validate.Length(min=9, max=120),
        metadata={
            "description": "5-field crontab (minute hour day-of-month month day-of-week; 0 or 7 = Sunday), "
            "evaluated in `timezone`; days 29-31 skip the months without them (no `L`). "
            "Give cron or interval_seconds.",
            "example": "0 9 1 * *",
        },
    )
    interval_seconds = fields.Integer(
        load_default=None,
        validate=validate.Range(min=1, max=INT4_MAX),
        metadata={"description": "fixed interval from start_at (minimum SCHEDULE_MIN_INTERVAL_SECONDS)"},
    )
    timezone = fields.String(
        load_default="UTC", validate=validate.Length(min=1, max=64), metadata={"example": "Europe/Berlin"}
    )
    start_at = fields.AwareDateTime(
        load_default=None, format="iso", metadata={"description": "first possible run (default: now)"}
    )
    end_at = fields.AwareDateTime(
        load_default=None, format="iso", metadata={"description": "last possible run"}
    )
    reference = fields.String(load_default=None, validate=validate.Length(max=255))
    misfire_policy = fields.String(
        load_default="run_once",
        validate=validate.OneOf(MISFIRE_POLICIES),
        metadata={
            "description": "runs that came due while the scheduler was down: `run_once` (default) makes one "
            "run for the whole missed period; `skip` runs none older than the grace period. Never a burst."
        },
    )

    @validates_schema
    def _one_recurrence(self, data, **kwargs):
        if (data.get("cron") is None) == (data.get("interval_seconds") is None):
            raise ValidationError("Give exactly one of cron or interval_seconds.", "cron")


class ScheduleSchema(Schema):
    id = fields.UUID()
    status = fields.String(metadata={"enum": list(SCHEDULE_STATUSES)})
    paused_reason = fields.String(allow_none=True)
    from_account_id = fields.UUID()
    to_account_id = fields.UUID()
    amount = fields.Function(
        lambda s: format_minor(s.amount_minor, s.currency), metadata={"example": "25.00"}
    )
    currency = fields.String()
    reference = fields.String(allow_none=True)
    cron = fields.String(allow_none=True)
    interval_seconds = fields.Integer(allow_none=True)
    timezone = fields.String()
    start_at = fields.DateTime(format="iso")
    end_at = fields.DateTime(format="iso", allow_none=True)
    misfire_policy = fields.String(metadata={"enum": list(MISFIRE_POLICIES)})
    next_run_at = fields.DateTime(
        format="iso", allow_none=True, metadata={"description": "null unless active"}
    )
    last_run_at = fields.DateTime(format="iso", allow_none=True)
    run_count = fields.Integer()
    consecutive_failures = fields.Integer()
    created_by = fields.UUID()
    created_at = fields.DateTime(format="iso")
    updated_at = fields.DateTime(format="iso")


SchedulePageSchema = page_schema(ScheduleSchema, "SchedulePage")


class ScheduleListArgsSchema(PageArgsSchema):
    status = fields.String(load_default=None, validate=validate.OneOf(SCHEDULE_STATUSES))
    account_id = fields.UUID(load_default=None)
