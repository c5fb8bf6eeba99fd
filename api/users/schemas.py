from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.auth.schemas import UserSchema
from api.extensions.schemas import PageArgsSchema, page_schema
from db.models import ROLES


class UserListArgsSchema(PageArgsSchema):
    role = fields.String(load_default=None, validate=validate.OneOf(ROLES))
    is_active = fields.Boolean(load_default=None)


UserPageSchema = page_schema(UserSchema, "UserPage")


class UserUpdateSchema(Schema):
    """Partial update: send only what changes. Any other field is refused (422)."""

    email = fields.Email(validate=validate.Length(max=254))
    password = fields.String(load_only=True, validate=validate.Length(min=12, max=1024))
    current_password = fields.String(
        load_only=True,
        validate=validate.Length(min=1, max=1024),
        metadata={"description": "required to change your own password"},
    )
    role = fields.String(validate=validate.OneOf(ROLES), metadata={"description": "admin only (else 403)"})
    is_active = fields.Boolean(metadata={"description": "admin only (else 403)"})
    id = fields.UUID(
        load_only=True, metadata={"description": "read-only: 403 for non-admins, 422 if it differs"}
    )

    @validates_schema
    def _current_password_with_password(self, data, **kwargs):
        if "current_password" in data and "password" not in data:
            raise ValidationError("only meaningful together with password", field_name="current_password")


class RateLimitOverrideSchema(Schema):
    """A service user's own budgets, replacing the defaults (LEDGERQ_RATE_LIMIT_DEFAULT,
    LEDGERQ_RATE_LIMIT_MONEY_PER_USER) for that user only. Unset: that default applies."""

    user_id = fields.UUID(dump_only=True)
    requests = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=100),
        metadata={
            "description": "every /api/v1 request, e.g. '6000 per minute'",
            "example": "6000 per minute",
        },
    )
    money = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "money-moving POSTs, e.g. '3000 per minute'", "example": "3000 per minute"},
    )
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))
    updated_by = fields.UUID(dump_only=True, allow_none=True)
    updated_at = fields.DateTime(dump_only=True)
