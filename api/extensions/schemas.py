"""Schemas and fields every resource shares: the error envelope, pagination, money."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"description": "stable machine-readable code"})
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class ErrorEnvelopeSchema(Schema):
    """The one error envelope of shared/API.md."""

    error = fields.Nested(ErrorBodySchema, required=True)


class DecimalString(fields.String):
    """An amount: a decimal *string*. JSON numbers are refused (they are floats in most
    clients); format and scale are checked against the currency by `db.core.money`."""

    default_error_messages = {"invalid": 'Must be a decimal string such as "10.50", not a JSON number.'}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise self.make_error("invalid")
        return value


# Largest value of a PostgreSQL INTEGER column: integer fields stored in one are capped
# here, so 2**31 is a 422 naming the field rather than a database error.
INT4_MAX = 2**31 - 1


class PageArgsSchema(Schema):
    # Capped at LEDGERQ_PAGE_SIZE_MAX by the views; past INT4_MAX it is no page size at all.
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=INT4_MAX))
    cursor = fields.String(load_default=None)


def page_schema(item_schema: type[Schema], name: str) -> type[Schema]:
    return Schema.from_dict(
        {"items": fields.List(fields.Nested(item_schema)), "next_cursor": fields.String(allow_none=True)},
        name=name,
    )


def reject_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("Must not be blank.")
