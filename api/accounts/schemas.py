from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.extensions.schemas import PageArgsSchema, page_schema
from db.money import format_minor


class AccountCreateSchema(Schema):
    currency = fields.String(
        required=True, validate=validate.Regexp(r"^[A-Z]{3}$", error="ISO 4217 code, e.g. USD.")
    )
    name = fields.String(load_default=None, validate=validate.Length(max=120))
    owner_id = fields.UUID(load_default=None, metadata={"description": "finance/admin only"})


class AccountListArgsSchema(PageArgsSchema):
    owner_id = fields.UUID(load_default=None)
    currency = fields.String(load_default=None, validate=validate.Regexp(r"^[A-Z]{3}$"))
    kind = fields.String(load_default=None, validate=validate.OneOf(["user", "system"]))


class AccountSchema(Schema):
    """Dumps a `db.services.accounts.AccountView`."""

    id = fields.Function(lambda v: str(v.account.id))
    owner_id = fields.Function(lambda v: str(v.account.owner_id) if v.account.owner_id else None)
    name = fields.Function(lambda v: v.account.name)
    currency = fields.Function(lambda v: v.account.currency)
    kind = fields.Function(lambda v: v.account.kind)
    status = fields.Function(lambda v: v.account.status)
    balance = fields.Function(lambda v: format_minor(v.balance_minor, v.account.currency))
    available_balance = fields.Function(lambda v: format_minor(v.available_minor, v.account.currency))
    overdraft_limit = fields.Function(lambda v: format_minor(v.overdraft_limit_minor, v.account.currency))
    created_at = fields.Function(lambda v: v.account.created_at.isoformat())
    updated_at = fields.Function(lambda v: v.account.updated_at.isoformat())


AccountPageSchema = page_schema(AccountSchema, "AccountPage")


class EntrySchema(Schema):
    id = fields.Function(lambda e: str(e.id))
    transaction_id = fields.Function(lambda e: str(e.transaction_id))
    account_id = fields.Function(lambda e: str(e.account_id))
    amount = fields.Function(
        lambda e: format_minor(e.amount_minor, e.currency),
        metadata={"description": "signed: negative leaves the account"},
    )
    currency = fields.String()
    balance_after = fields.Function(lambda e: format_minor(e.balance_after_minor, e.currency))
    created_at = fields.Function(lambda e: e.created_at.isoformat())


EntryPageSchema = page_schema(EntrySchema, "EntryPage")
