from __future__ import annotations

from marshmallow import Schema, fields

from api.extensions.schemas import PageArgsSchema, page_schema
from db.core.money import format_minor


class CurrentArgsSchema(PageArgsSchema):
    account_id = fields.UUID(load_default=None)


class BalanceSchema(Schema):
    """Dumps a `db.accounts.service.AccountView` as a balance snapshot."""

    account_id = fields.Function(lambda v: str(v.account.id))
    currency = fields.Function(lambda v: v.account.currency)
    balance = fields.Function(lambda v: format_minor(v.balance_minor, v.account.currency))
    available_balance = fields.Function(lambda v: format_minor(v.available_minor, v.account.currency))
    as_of = fields.Function(lambda v: v.as_of.isoformat())


BalancePageSchema = page_schema(BalanceSchema, "BalancePage")

_RFC3339 = "RFC 3339 with offset, e.g. 2026-01-31T23:59:59+00:00"


class HistoricalArgsSchema(PageArgsSchema):
    account_id = fields.UUID(required=True)
    from_ = fields.AwareDateTime(
        data_key="from",
        load_default=None,
        format="iso",
        metadata={"description": f"entries created at or after this instant; {_RFC3339}"},
    )
    to = fields.AwareDateTime(
        load_default=None,
        format="iso",
        metadata={"description": f"entries created at or before this instant; {_RFC3339}"},
    )


class HistoricalPointSchema(Schema):
    """Dumps a `HistoricalPoint`: the balance right after one ledger entry."""

    at = fields.Function(lambda p: p.entry.created_at.isoformat(), metadata={"type": "string"})
    balance = fields.Function(
        lambda p: format_minor(p.entry.balance_after_minor, p.currency), metadata={"type": "string"}
    )
    transaction_id = fields.Function(lambda p: str(p.entry.transaction_id), metadata={"type": "string"})
    amount = fields.Function(
        lambda p: format_minor(p.entry.amount_minor, p.currency),
        metadata={"type": "string", "description": "signed: negative left the account"},
    )


HistoricalPageSchema = page_schema(HistoricalPointSchema, "BalanceHistoryPage")


class AtTimeArgsSchema(Schema):
    account_id = fields.UUID(required=True)
    at = fields.AwareDateTime(
        load_default=None, format="iso", metadata={"description": f"{_RFC3339}; default: now"}
    )


class AtTimeBalanceSchema(Schema):
    """Dumps an `AtTimeBalance`."""

    account_id = fields.Function(lambda v: str(v.account.id), metadata={"type": "string"})
    at = fields.Function(lambda v: v.at.isoformat(), metadata={"type": "string"})
    balance = fields.Function(
        lambda v: format_minor(v.balance_minor, v.account.currency),
        metadata={"type": "string", "description": "0 before the account's first entry"},
    )
