from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema


class RegisterSchema(Schema):
    username = fields.String(
        required=True,
        validate=validate.Regexp(r"^[A-Za-z0-9_.-]{3,64}$", error="3-64 letters, digits, '_', '.' or '-'."),
    )
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=12, max=1024))


class LoginSchema(Schema):
    username = fields.String(load_default=None, validate=validate.Length(min=1, max=254))
    email = fields.String(load_default=None, validate=validate.Length(min=1, max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=1024))

    @validates_schema
    def _one_login(self, data, **kwargs):
        if not (data.get("username") or data.get("email")):
            raise ValidationError("Send username or email.", field_name="username")


class RefreshSchema(Schema):
    refresh_token = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=4096))


class TokenSchema(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = fields.Integer(required=True, metadata={"description": "access token lifetime, seconds"})


class UserSchema(Schema):
    id = fields.UUID(dump_only=True)
    username = fields.String()
    email = fields.String()
    role = fields.String()
    is_active = fields.Boolean()
    created_at = fields.DateTime(format="iso")
    updated_at = fields.DateTime(format="iso")
