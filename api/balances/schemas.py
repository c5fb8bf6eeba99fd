from __future__ import annotations

from marshmallow import Schema, fields

from api.extensions.schemas import PageArgsSchema, page_schema
from db.money import format_minor


class CurrentArgsSchema(PageArgsSchema):
    account_id = fields.UUID(load_default=None)


class BalanceSchema(Schema):
    """Dumps a `db.services.accounts.AccountView` as a balance snapshot."""

    account_id = fields.Function(lambda v: str(v.account.id))
    currency = fields.Function(lambda v: v.account.currency)
    balance = fields.Function(lambda v: format_minor(v.balance_minor, v.account.currency))
    available_balance = fields.Function(lambda v: format_minor(v.available_minor, v.account.currency))
    as_of = fields.Function(lambda v: v.as_of.isoformat())


BalancePageSchema = page_schema(BalanceSchema, "BalancePage")
