"""fx exchange: rate versions, the `exchange` type, and `fx`/`fees` system accounts

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 04:00:00

- `fx_rate_versions` is the rate history, append-only (a trigger forbids UPDATE and
  DELETE): the current rate of a pair is its newest version, and every exchange points
  at the version it was quoted from.
- `accounts.system_role` tells a currency's system accounts apart: `external` (every
  existing system account), `fx` (the currency's side of every exchange) and `fees`.
  The unique index becomes one system account per (currency, role).
- `transactions` gains the exchange's figures fixed at request time: `to_amount_minor`,
  `to_currency`, `fx_rate`, `fee_minor`, `fx_rate_version_id`; present together or not
  at all, and only on an `exchange` or on the `reversal` of one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_TYPES = "type IN ('transfer', 'credit', 'debit', 'reversal', 'hold', 'capture')"
_NEW_TYPES = "type IN ('transfer', 'credit', 'debit', 'reversal', 'hold', 'capture', 'exchange')"
# The figures come together or not at all, only on an exchange (which always has them
# and its rate version) or on the reversal of one (db/models.py, EXCHANGE_FIGURES_CHECK).
_EXCHANGE_FIGURES = (
    "(to_amount_minor IS NULL) = (to_currency IS NULL) AND (fx_rate IS NULL) = (to_currency IS NULL) "
    "AND (fee_minor IS NULL) = (to_currency IS NULL) AND (to_currency IS NULL OR (type IN ('exchange', "
    "'reversal') AND to_currency <> currency AND to_amount_minor > 0 AND fee_minor >= 0 AND fx_rate > 0)) "
    "AND ((type = 'exchange') <= (to_currency IS NOT NULL AND fx_rate_version_id IS NOT NULL))"
)
_EXCHANGE_COLUMNS = ("to_amount_minor", "to_currency", "fx_rate", "fee_minor", "fx_rate_version_id")


def upgrade() -> None:
    op.create_table(
        "fx_rate_versions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("base", sa.String(length=3), nullable=False),
        sa.Column("quote", sa.String(length=3), nullable=False),
        sa.Column("rate", sa.Numeric(30, 18), nullable=False),
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.UUID(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("rate > 0", name=op.f("ck_fx_rate_versions_rate_positive")),
        sa.CheckConstraint(
            "fee_bps >= 0 AND fee_bps < 10000", name=op.f("ck_fx_rate_versions_fee_bps_range")
        ),
        sa.CheckConstraint("base <> quote", name=op.f("ck_fx_rate_versions_distinct_currencies")),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_fx_rate_versions_created_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fx_rate_versions")),
    )
    op.create_index("ix_fx_rate_versions_pair_id", "fx_rate_versions", ["base", "quote", "id"])
    for kind, event in (("append_only", "UPDATE OR DELETE"), ("no_truncate", "TRUNCATE")):
        level = "ROW" if kind == "append_only" else "STATEMENT"
        op.execute(
            f"CREATE TRIGGER fx_rate_versions_{kind} BEFORE {event} ON fx_rate_versions "
            f"FOR EACH {level} EXECUTE FUNCTION ledgerq_forbid_change()"
        )

    op.add_column("accounts", sa.Column("system_role", sa.String(length=8), nullable=True))
    op.execute("UPDATE accounts SET system_role = 'external' WHERE kind = 'system'")
    op.create_check_constraint(
        op.f("ck_accounts_system_role_valid"),
        "accounts",
        "system_role IS NULL OR system_role IN ('external', 'fx', 'fees')",
    )
    op.create_check_constraint(
        op.f("ck_accounts_system_role_with_kind"), "accounts", "(kind = 'system') = (system_role IS NOT NULL)"
    )
    op.drop_index(
        "uq_accounts_system_currency", table_name="accounts", postgresql_where=sa.text("kind = 'system'")
    )
    op.create_index(
        "uq_accounts_system_currency_role",
        "accounts",
        ["currency", "system_role"],
        unique=True,
        postgresql_where=sa.text("kind = 'system'"),
    )

    op.drop_constraint(op.f("ck_transactions_type_valid"), "transactions", type_="check")
    op.create_check_constraint(op.f("ck_transactions_type_valid"), "transactions", _NEW_TYPES)
    op.add_column("transactions", sa.Column("to_amount_minor", sa.BigInteger(), nullable=True))
    op.add_column("transactions", sa.Column("to_currency", sa.String(length=3), nullable=True))
    op.add_column("transactions", sa.Column("fx_rate", sa.Numeric(30, 18), nullable=True))
    op.add_column("transactions", sa.Column("fee_minor", sa.BigInteger(), nullable=True))
    op.add_column("transactions", sa.Column("fx_rate_version_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_transactions_fx_rate_version_id_fx_rate_versions"),
        "transactions",
        "fx_rate_versions",
        ["fx_rate_version_id"],
        ["id"],
    )
    op.create_check_constraint(op.f("ck_transactions_exchange_figures"), "transactions", _EXCHANGE_FIGURES)


def downgrade() -> None:
    op.drop_constraint(op.f("ck_transactions_exchange_figures"), "transactions", type_="check")
    op.drop_constraint(
        op.f("fk_transactions_fx_rate_version_id_fx_rate_versions"), "transactions", type_="foreignkey"
    )
    for column in reversed(_EXCHANGE_COLUMNS):
        op.drop_column("transactions", column)
    op.drop_constraint(op.f("ck_transactions_type_valid"), "transactions", type_="check")
    op.create_check_constraint(op.f("ck_transactions_type_valid"), "transactions", _OLD_TYPES)

    op.drop_index(
        "uq_accounts_system_currency_role", table_name="accounts", postgresql_where=sa.text("kind = 'system'")
    )
    # Only the `external` accounts fit the old one-per-currency index; fx and fees
    # accounts with entries cannot be dropped, so a downgrade after exchanges fails here.
    op.execute(
        "DELETE FROM balances WHERE account_id IN (SELECT id FROM accounts WHERE system_role IN ('fx', 'fees'))"
    )
    op.execute("DELETE FROM accounts WHERE system_role IN ('fx', 'fees')")
    op.create_index(
        "uq_accounts_system_currency",
        "accounts",
        ["currency"],
        unique=True,
        postgresql_where=sa.text("kind = 'system'"),
    )
    op.drop_constraint(op.f("ck_accounts_system_role_with_kind"), "accounts", type_="check")
    op.drop_constraint(op.f("ck_accounts_system_role_valid"), "accounts", type_="check")
    op.drop_column("accounts", "system_role")

    op.drop_index("ix_fx_rate_versions_pair_id", table_name="fx_rate_versions")
    op.drop_table("fx_rate_versions")
