"""holds (two-phase transfers): a reservation stored on the balance row, hold and capture rows

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 03:00:00

`balances.held_minor` is what the account's `held` holds reserve, maintained under the
account row lock by the posting engine, a void and the expiry tick, so every funds check
reads it from the row it already locked (no sum over holds). The CHECK makes "balance
minus held never below the overdraft floor" a database fact.

A hold is a `transactions` row (type `hold`) with `held_amount_minor` (still reserved),
`captured_amount_minor` and `expires_at`; a capture is a row of type `capture` whose
`captures` names its hold. At most one effective capture per hold (a failed or cancelled
one moved nothing and blocks nothing): a partial unique index, like reversals'.

The final-status NOTIFY (migration 0008) also fires for the hold statuses, so a
long-poll on a hold returns as soon as the worker decides it (`held` or `failed`).

Merging note: the type/status CHECKs are rewritten whole; a later migration that adds
types or statuses must keep these.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TYPES_OLD = ("transfer", "credit", "debit", "reversal")
_TYPES_NEW = (*_TYPES_OLD, "hold", "capture")
_STATUSES_OLD = ("scheduled", "pending", "completed", "failed", "cancelled", "dead_lettered")
_HOLD_STATUSES = ("held", "captured", "voided", "expired")
_STATUSES_NEW = (*_STATUSES_OLD, *_HOLD_STATUSES)
_NOTIFY_OLD = ("completed", "failed", "cancelled", "dead_lettered")
_NOTIFY_NEW = (*_NOTIFY_OLD, *_HOLD_STATUSES)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _notify_function(statuses: tuple[str, ...]) -> str:
    return f"""
        CREATE OR REPLACE FUNCTION notify_transaction_final() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            chunk text;
        BEGIN
            FOR chunk IN
                SELECT string_agg(id::text, ',')
                FROM (
                    SELECT n.id, (row_number() OVER () - 1) / 200 AS part
                    FROM new_rows n JOIN old_rows o ON o.id = n.id
                    WHERE {_in("n.status", statuses)}
                      AND o.status IS DISTINCT FROM n.status
                ) finalised
                GROUP BY part
            LOOP
                PERFORM pg_notify('ledgerq_transaction_final', chunk);
            END LOOP;
            RETURN NULL;
        END $$
        """


def _replace_check(name: str, condition: str) -> None:
    op.drop_constraint(op.f(name), "transactions", type_="check")
    op.create_check_constraint(op.f(name), "transactions", condition)


def upgrade() -> None:
    op.add_column("balances", sa.Column("held_minor", sa.BigInteger, nullable=False, server_default="0"))
    op.create_check_constraint(op.f("ck_balances_held_non_negative"), "balances", "held_minor >= 0")
    op.create_check_constraint(
        op.f("ck_balances_within_overdraft_when_held"),
        "balances",
        "allow_negative OR balance_minor - held_minor >= -overdraft_limit_minor",
    )

    op.add_column("transactions", sa.Column("held_amount_minor", sa.BigInteger))
    op.add_column("transactions", sa.Column("captured_amount_minor", sa.BigInteger))
    op.add_column("transactions", sa.Column("expires_at", sa.DateTime(timezone=True)))
    op.add_column(
        "transactions",
        sa.Column(
            "captures",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("transactions.id", name=op.f("fk_transactions_captures_transactions")),
        ),
    )
    _replace_check("ck_transactions_type_valid", _in("type", _TYPES_NEW))
    _replace_check("ck_transactions_status_valid", _in("status", _STATUSES_NEW))
    op.create_check_constraint(
        op.f("ck_transactions_hold_columns"),
        "transactions",
        "(type = 'hold') = (held_amount_minor IS NOT NULL AND captured_amount_minor IS NOT NULL "
        "AND expires_at IS NOT NULL)",
    )
    op.create_check_constraint(
        op.f("ck_transactions_hold_amounts"),
        "transactions",
        "held_amount_minor IS NULL OR (held_amount_minor >= 0 AND captured_amount_minor >= 0 "
        "AND held_amount_minor + captured_amount_minor <= amount_minor)",
    )
    op.create_check_constraint(
        op.f("ck_transactions_capture_names_hold"),
        "transactions",
        "(type = 'capture') = (captures IS NOT NULL)",
    )
    op.create_check_constraint(
        op.f("ck_transactions_hold_statuses"),
        "transactions",
        f"type = 'hold' OR NOT {_in('status', _HOLD_STATUSES)}",
    )
    # One effective capture per hold, whoever races (the backstop of the hold's row lock).
    op.create_index(
        "uq_transactions_captures",
        "transactions",
        ["captures"],
        unique=True,
        postgresql_where=sa.text("captures IS NOT NULL AND status NOT IN ('failed', 'cancelled')"),
    )
    # The expiry tick's claim: `held` holds by expiry time.
    op.create_index(
        "ix_transactions_held_expires_at",
        "transactions",
        ["expires_at"],
        postgresql_where=sa.text("status = 'held'"),
    )
    op.execute(_notify_function(_NOTIFY_NEW))


def downgrade() -> None:
    op.execute(_notify_function(_NOTIFY_OLD))
    op.drop_index("ix_transactions_held_expires_at", table_name="transactions")
    op.drop_index("uq_transactions_captures", table_name="transactions")
    for name in ("hold_statuses", "capture_names_hold", "hold_amounts", "hold_columns"):
        op.drop_constraint(op.f(f"ck_transactions_{name}"), "transactions", type_="check")
    _replace_check("ck_transactions_status_valid", _in("status", _STATUSES_OLD))
    _replace_check("ck_transactions_type_valid", _in("type", _TYPES_OLD))
    op.drop_column("transactions", "captures")
    op.drop_column("transactions", "expires_at")
    op.drop_column("transactions", "captured_amount_minor")
    op.drop_column("transactions", "held_amount_minor")
    op.drop_constraint(op.f("ck_balances_within_overdraft_when_held"), "balances", type_="check")
    op.drop_constraint(op.f("ck_balances_held_non_negative"), "balances", type_="check")
    op.drop_column("balances", "held_minor")
