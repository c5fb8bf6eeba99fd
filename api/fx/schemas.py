from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.extensions.schemas import DecimalString, PageArgsSchema, page_schema
from db.fx.rates import FEE_BPS_MAX, MAX_SIGNIFICANT_DIGITS, render_rate


class RateUpdateSchema(Schema):
    rate = DecimalString(
        required=True,
        metadata={
            "example": "1.0842",
            "description": f"1 base = rate quote: a positive decimal string, at most {MAX_SIGNIFICANT_DIGITS} "
            "significant digits, below 10^12, at most 18 decimals",
        },
    )
    fee_bps = fields.Integer(
        load_default=0,
        strict=True,
        validate=validate.Range(min=0, max=FEE_BPS_MAX),
        metadata={
            "description": f"the exchange fee in basis points of the amount, 0 to {FEE_BPS_MAX} (default 0)"
        },
    )


class RateSchema(Schema):
    base = fields.String()
    quote = fields.String()
    rate = fields.Function(lambda v: render_rate(v.rate), metadata={"type": "string", "example": "1.0842"})
    fee_bps = fields.Integer()
    version = fields.Integer(
        attribute="id", metadata={"description": "exchanges name the version they applied"}
    )
    updated_by = fields.UUID(attribute="created_by")
    updated_at = fields.DateTime(attribute="created_at", format="iso")


class RateListSchema(Schema):
    items = fields.List(fields.Nested(RateSchema))


RatePageSchema = page_schema(RateSchema, "RatePage")


class RateHistoryArgsSchema(PageArgsSchema):
    pass
