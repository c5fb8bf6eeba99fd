from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.extensions.schemas import INT4_MAX, DecimalString, PageArgsSchema, page_schema
from db.core.money import format_minor
from db.ledger.limits import LIMIT_NAMES


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
    """Dumps a `db.accounts.service.AccountView`."""

    id = fields.Function(lambda v: str(v.account.id))
    owner_id = fields.Function(lambda v: str(v.account.owner_id) if v.account.owner_id else None)
    name = fields.Function(lambda v: v.account.name)
    currency = fields.Function(lambda v: v.account.currency)
    kind = fields.Function(lambda v: v.account.kind)
    status = fields.Function(lambda v: v.account.status)
    balance = fields.Function(lambda v: format_minor(v.balance_minor, v.account.currency))
    available_balance = fields.Function(
        lambda v: format_minor(v.available_minor, v.account.currency),
        metadata={
            "description": "balance minus pending outgoing amounts and what holds reserve "
            "(overdraft headroom not included)"
        },
    )
    overdraft_limit = fields.Function(
        lambda v: format_minor(v.overdraft_limit_minor, v.account.currency),
        metadata={"description": "the balance may go down to -overdraft_limit (system accounts: unlimited)"},
    )
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
    hash = fields.String(
        metadata={
            "description": "hex SHA-256 of this entry chained to the account's previous one: over "
            "the lines `ledgerq-entry-v1`, id, transaction_id, account_id, amount in minor units, "
            "currency, balance after in minor units, created_at (UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`) "
            "and prev_hash (empty for the first), joined by `\\n` as UTF-8 "
            "(deployment/MONEY_RULES.md, Tamper-evident ledger)"
        }
    )
    prev_hash = fields.String(
        allow_none=True,
        metadata={"description": "the hash of the account's previous entry; null for its first"},
    )


EntryPageSchema = page_schema(EntrySchema, "EntryPage")


class StatusChangeSchema(Schema):
    reason = fields.String(
        load_default=None,
        validate=validate.Length(max=500),
        metadata={"description": "recorded in the audit log"},
    )


_RESET = "null resets it to the configured default."


class LimitsUpdateSchema(Schema):
    """Per-account overrides. Amounts are decimal strings in the account's currency."""

    max_per_transaction = DecimalString(
        allow_none=True, metadata={"description": "largest single outgoing amount; " + _RESET}
    )
    daily_outgoing_limit = DecimalString(
        allow_none=True,
        metadata={"description": "outgoing completed + pending per UTC calendar day; " + _RESET},
    )
    per_minute_outgoing_count = fields.Integer(
        allow_none=True,
        strict=True,
        validate=validate.Range(min=1, max=INT4_MAX),
        metadata={"description": "outgoing transfers in any rolling 60 s; " + _RESET},
    )
    overdraft_limit = DecimalString(
        allow_none=True,
        metadata={
            "description": 'the balance may go down to minus this ("0" = no overdraft); null resets to 0'
        },
    )


_NULLABLE_AMOUNT = {"type": "string", "nullable": True, "example": "100.00"}


def _amount_or_none(minor, v):
    return None if minor is None else format_minor(minor, v.account.currency)


class LimitsSchema(Schema):
    """Dumps a `db.accounts.service.LimitsView`: the limits in force (null = unlimited)."""

    account_id = fields.Function(lambda v: str(v.account.id), metadata={"type": "string"})
    currency = fields.Function(lambda v: v.account.currency, metadata={"type": "string"})
    max_per_transaction = fields.Function(
        lambda v: _amount_or_none(v.limits.max_per_transaction_minor, v), metadata=_NULLABLE_AMOUNT
    )
    daily_outgoing_limit = fields.Function(
        lambda v: _amount_or_none(v.limits.daily_outgoing_minor, v), metadata=_NULLABLE_AMOUNT
    )
    per_minute_outgoing_count = fields.Function(
        lambda v: v.limits.per_minute_outgoing_count, metadata={"type": "integer", "nullable": True}
    )
    overdraft_limit = fields.Function(
        lambda v: _amount_or_none(v.overdraft_limit_minor, v),
        metadata={**_NULLABLE_AMOUNT, "description": "null: unlimited (system accounts)"},
    )
    overrides = fields.Function(
        lambda v: list(v.limits.overridden),
        metadata={
            "type": "array",
            "items": {"type": "string", "enum": [*LIMIT_NAMES]},
            "description": "limits set on this account rather than taken from the defaults",
        },
    )
