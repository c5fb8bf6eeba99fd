"""SQLAlchemy 2 models. The migrations in `migrations/versions` are the source of truth
for the schema (tests build their database by running them); `alembic check` in CI keeps
these models and the migrations from drifting apart.

Amounts are BIGINT minor units (see `db.core.money`). Relationships are `lazy="raise"`:
every load is explicit, in a repository.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("customer", "finance", "admin")
ACCOUNT_KINDS = ("user", "system")
ACCOUNT_STATUSES = ("active", "frozen", "closed")
# A currency's system accounts: `external` (money in and out), `fx` (its side of every
# exchange) and `fees` (exchange fees); see deployment/MONEY_RULES.md.
SYSTEM_ROLES = ("external", "fx", "fees")
TRANSACTION_TYPES = ("transfer", "credit", "debit", "reversal", "hold", "capture", "exchange")
# A hold's own statuses (db/holds): `held` until captured, voided or expired.
HOLD_STATUSES = ("held", "captured", "voided", "expired")
TRANSACTION_STATUSES = (
    "scheduled",
    "pending",
    "completed",
    "failed",
    "cancelled",
    "dead_lettered",
    *HOLD_STATUSES,
)
# What a long-poll waits for: the worker's decision. A hold's `held` is one (it can still
# be captured, voided or expired, but the worker is done with it).
FINAL_STATUSES = ("completed", "failed", "cancelled", "dead_lettered", *HOLD_STATUSES)
FAILURE_CODES = (
    "insufficient_funds",
    "account_inactive",
    "limit_exceeded",
    "currency_mismatch",
    "amount_out_of_range",
)
SCHEDULE_STATUSES = ("active", "paused", "ended", "deleted")
MISFIRE_POLICIES = ("run_once", "skip")
# Why a refresh-token family stopped working (forensics; the audit log has the details).
REVOKE_REASONS = ("logout", "reuse_detected", "deactivated", "password_changed")
BATCH_STATUSES = (
    "received",
    "validating",
    "scheduled",
    "processing",
    "completed",
    "completed_with_errors",
    "failed",
    "cancelled",
)
BATCH_FINAL_STATUSES = ("completed", "completed_with_errors", "failed", "cancelled")
BATCH_MODES = ("independent", "atomic")
BATCH_SOURCES = ("api", "inbox")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# The exchange figures come together or not at all, only on an exchange (which always
# has them and its rate version) or on the reversal of one.
_EXCHANGE_NULLABLE = ("to_amount_minor", "fx_rate", "fee_minor")
EXCHANGE_FIGURES_CHECK = (
    " AND ".join(f"({c} IS NULL) = (to_currency IS NULL)" for c in _EXCHANGE_NULLABLE)
    + " AND (to_currency IS NULL OR (type IN ('exchange', 'reversal') "
    "AND to_currency <> currency AND to_amount_minor > 0 AND fee_minor >= 0 AND fx_rate > 0))"
    " AND ((type = 'exchange') <= (to_currency IS NOT NULL AND fx_rate_version_id IS NOT NULL))"
)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


def _updated_at() -> Mapped[datetime]:
    return mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="role_valid"),
        Index("uq_users_username_lower", text("lower(username)"), unique=True),
        Index("uq_users_email_lower", text("lower(email)"), unique=True),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    username: Mapped[str] = mapped_column(String(64), nullable=False)
    email: Mapped[str] = mapped_column(String(254), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False, server_default="customer")
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    # Access tokens carry it as `ver`; bumping it (password change, deactivation) kills
    # every access token already issued, and a reactivated user's old ones stay dead.
    token_version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class RateLimitOverride(Base):
    """An admin's per-user quota (a service user for an integration): replaces the
    default request and money-movement budgets of that user (api/extensions/rate_limit.py).
    Limit strings as in the settings ("6000 per minute", "100/second;5000/minute")."""

    __tablename__ = "rate_limit_overrides"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    requests: Mapped[str | None] = mapped_column(String(100))
    money: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(500), nullable=False)
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = _updated_at()


class RefreshToken(Base):
    """Server-side state of refresh tokens (hashed), for rotation and reuse detection."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        CheckConstraint(
            "revoked_reason IS NULL OR " + _in("revoked_reason", REVOKE_REASONS), name="revoked_reason_valid"
        ),
        CheckConstraint("(revoked_at IS NULL) = (revoked_reason IS NULL)", name="revoked_has_reason"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()  # the token's jti
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    family_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, index=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    spent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = _created_at()


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint(_in("kind", ACCOUNT_KINDS), name="kind_valid"),
        CheckConstraint(_in("status", ACCOUNT_STATUSES), name="status_valid"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_format"),
        # A user account has an owner; a system account has none.
        CheckConstraint("(kind = 'system') = (owner_id IS NULL)", name="owner_matches_kind"),
        # Per-account limit overrides (NULL = the configured default); see db.ledger.limits.
        CheckConstraint(
            "max_per_transaction_minor IS NULL OR max_per_transaction_minor > 0",
            name="max_per_transaction_positive",
        ),
        CheckConstraint(
            "daily_outgoing_limit_minor IS NULL OR daily_outgoing_limit_minor > 0",
            name="daily_outgoing_limit_positive",
        ),
        CheckConstraint(
            "per_minute_outgoing_count IS NULL OR per_minute_outgoing_count > 0",
            name="per_minute_outgoing_count_positive",
        ),
        # Exactly one system account per currency and role (`external`, `fx`, `fees`).
        CheckConstraint(
            "system_role IS NULL OR " + _in("system_role", SYSTEM_ROLES), name="system_role_valid"
        ),
        CheckConstraint("(kind = 'system') = (system_role IS NOT NULL)", name="system_role_with_kind"),
        Index(
            "uq_accounts_system_currency_role",
            "currency",
            "system_role",
            unique=True,
            postgresql_where=text("kind = 'system'"),
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(120), nullable=False, server_default="")
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    kind: Mapped[str] = mapped_column(String(8), nullable=False, server_default="user")
    status: Mapped[str] = mapped_column(String(8), nullable=False, server_default="active")
    max_per_transaction_minor: Mapped[int | None] = mapped_column(BigInteger)
    daily_outgoing_limit_minor: Mapped[int | None] = mapped_column(BigInteger)
    per_minute_outgoing_count: Mapped[int | None] = mapped_column(Integer)
    system_role: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class Balance(Base):
    """One row per account: the running balance the worker locks and updates.

    `allow_negative` is true only for system accounts; the CHECK makes "non-system
    balances never below -overdraft_limit" a database fact, not a Python hope.
    """

    __tablename__ = "balances"
    __table_args__ = (
        CheckConstraint("overdraft_limit_minor >= 0", name="overdraft_non_negative"),
        CheckConstraint("allow_negative OR balance_minor >= -overdraft_limit_minor", name="within_overdraft"),
        CheckConstraint("held_minor >= 0", name="held_non_negative"),
        CheckConstraint(
            "allow_negative OR balance_minor - held_minor >= -overdraft_limit_minor",
            name="within_overdraft_when_held",
        ),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    balance_minor: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    overdraft_limit_minor: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    allow_negative: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    # What the account's `held` holds reserve (db/holds): spendable = balance - held,
    # down to the floor; kept under this row's lock, so no check ever sums holds.
    held_minor: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    # The hash of the account's last ledger entry (db/ledger/hash_chain.py): read with
    # the account lock, so the next entry's prev_hash costs no query. NULL: no entries.
    head_hash: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = _updated_at()


class Transaction(Base):
    """A transfer request and its fate. Created `pending` (or `scheduled`) by the API;
    decided exactly once by the worker under a row lock."""

    __tablename__ = "transactions"
    __table_args__ = (
        # At most one *effective* reversal per transaction: a reversal that failed
        # (funds already spent, account frozen) or was cancelled moved nothing and must
        # not block a later one.
        Index(
            "uq_transactions_reverses",
            "reverses",
            unique=True,
            postgresql_where=text("reverses IS NOT NULL AND status NOT IN ('failed', 'cancelled')"),
        ),
        CheckConstraint(_in("type", TRANSACTION_TYPES), name="type_valid"),
        CheckConstraint(_in("status", TRANSACTION_STATUSES), name="status_valid"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("from_account_id <> to_account_id", name="distinct_accounts"),
        CheckConstraint(
            "failure_code IS NULL OR " + _in("failure_code", FAILURE_CODES), name="failure_code_valid"
        ),
        CheckConstraint("(status = 'failed') = (failure_code IS NOT NULL)", name="failed_has_code"),
        UniqueConstraint("created_by", "idempotency_key", name="uq_transactions_created_by_idempotency_key"),
        Index("ix_transactions_pending_updated", "updated_at", postgresql_where=text("status = 'pending'")),
        # The workers' bulk claim: oldest pending transfers never tried yet.
        Index(
            "ix_transactions_claimable_seq",
            "seq",
            postgresql_where=text("status = 'pending' AND attempts = 0 AND batch_id IS NULL"),
        ),
        Index(
            "ix_transactions_pending_from",
            "from_account_id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_transactions_from_seq", "from_account_id", "seq"),
        # Daily and per-minute outgoing limits sum what an account sent recently.
        Index(
            "ix_transactions_completed_from",
            "from_account_id",
            "completed_at",
            postgresql_where=text("status = 'completed'"),
        ),
        Index("ix_transactions_to_seq", "to_account_id", "seq"),
        # A batch's lines in file order (chunks read windows of it); one row per line.
        Index("uq_transactions_batch_id_batch_line", "batch_id", "batch_line", unique=True),
        CheckConstraint("(batch_id IS NULL) = (batch_line IS NULL)", name="batch_line_with_batch"),
        # Standing orders: one run per (schedule, run time), whoever creates it and however often.
        UniqueConstraint(
            "schedule_id", "scheduled_run_at", name="uq_transactions_schedule_id_scheduled_run_at"
        ),
        CheckConstraint("(schedule_id IS NULL) = (scheduled_run_at IS NULL)", name="schedule_run_complete"),
        # The release tick's claim: due `scheduled` rows, oldest first.
        Index(
            "ix_transactions_scheduled_due", "scheduled_for", postgresql_where=text("status = 'scheduled'")
        ),
        # Holds (migration 0013): one effective capture per hold; the expiry tick's claim.
        Index(
            "uq_transactions_captures",
            "captures",
            unique=True,
            postgresql_where=text("captures IS NOT NULL AND status NOT IN ('failed', 'cancelled')"),
        ),
        Index("ix_transactions_held_expires_at", "expires_at", postgresql_where=text("status = 'held'")),
        CheckConstraint(
            "(type = 'hold') = (held_amount_minor IS NOT NULL AND captured_amount_minor IS NOT NULL "
            "AND expires_at IS NOT NULL)",
            name="hold_columns",
        ),
        CheckConstraint(
            "held_amount_minor IS NULL OR (held_amount_minor >= 0 AND captured_amount_minor >= 0 "
            "AND held_amount_minor + captured_amount_minor <= amount_minor)",
            name="hold_amounts",
        ),
        CheckConstraint("(type = 'capture') = (captures IS NOT NULL)", name="capture_names_hold"),
        CheckConstraint(f"type = 'hold' OR NOT {_in('status', HOLD_STATUSES)}", name="hold_statuses"),
        CheckConstraint(EXCHANGE_FIGURES_CHECK, name="exchange_figures"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    # Monotonic insertion order: the stable cursor for history pagination.
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), nullable=False, unique=True)
    type: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    from_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), nullable=False)
    to_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), nullable=False)
    amount_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    reference: Mapped[str | None] = mapped_column(String(255))
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # SHA-256 of the canonical request, to tell a replay from a reused key.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    failure_code: Mapped[str | None] = mapped_column(String(32))
    failure_message: Mapped[str | None] = mapped_column(Text)
    scheduled_for: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id"))
    # The line of the batch file this transaction came from.
    batch_line: Mapped[int | None] = mapped_column(Integer)
    schedule_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("schedules.id"), index=True)
    # The standing order's run time this transaction is (the idempotency key of a run).
    scheduled_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reverses: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transactions.id"))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    # A hold (type `hold`): what it still reserves, what its capture moved, when it expires.
    held_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    captured_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A capture (type `capture`): the hold it moves money for.
    captures: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transactions.id"))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # An exchange's figures, fixed at request time (db/fx/quotes.py); a reversal of an
    # exchange carries them mirrored. NULL on every other transaction.
    to_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    to_currency: Mapped[str | None] = mapped_column(String(3))
    fx_rate: Mapped[Decimal | None] = mapped_column(Numeric(30, 18))
    fee_minor: Mapped[int | None] = mapped_column(BigInteger)
    fx_rate_version_id: Mapped[int | None] = mapped_column(ForeignKey("fx_rate_versions.id"))


class FxRateVersion(Base):
    """One rate of a currency pair as finance set it: 1 `base` = `rate` `quote`, and the
    fee in basis points of the exchanged amount. Append-only (a trigger forbids UPDATE and
    DELETE): the newest version of a pair is its current rate, and every exchange points
    at the version it was quoted from."""

    __tablename__ = "fx_rate_versions"
    __table_args__ = (
        CheckConstraint("rate > 0", name="rate_positive"),
        CheckConstraint("fee_bps >= 0 AND fee_bps < 10000", name="fee_bps_range"),
        CheckConstraint("base <> quote", name="distinct_currencies"),
        Index("ix_fx_rate_versions_pair_id", "base", "quote", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    base: Mapped[str] = mapped_column(String(3), nullable=False)
    quote: Mapped[str] = mapped_column(String(3), nullable=False)
    rate: Mapped[Decimal] = mapped_column(Numeric(30, 18), nullable=False)
    fee_bps: Mapped[int] = mapped_column(Integer, nullable=False)
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = _created_at()


class Schedule(Base):
    """A standing order: a transfer template plus a recurrence (cron or fixed interval).

    Its run state lives here, not in APScheduler's memory: `next_run_at` is advanced in
    the same DB transaction that creates the run's transaction, so a scheduler restart
    neither loses nor repeats a run.
    """

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint(_in("status", SCHEDULE_STATUSES), name="status_valid"),
        CheckConstraint(_in("misfire_policy", MISFIRE_POLICIES), name="misfire_policy_valid"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("from_account_id <> to_account_id", name="distinct_accounts"),
        CheckConstraint("(cron IS NULL) <> (interval_seconds IS NULL)", name="one_recurrence"),
        CheckConstraint("interval_seconds IS NULL OR interval_seconds > 0", name="interval_positive"),
        CheckConstraint("end_at IS NULL OR end_at > start_at", name="ends_after_start"),
        CheckConstraint("consecutive_failures >= 0", name="failures_non_negative"),
        # Only an active schedule has a next run; paused, ended and deleted ones have none.
        CheckConstraint("(status = 'active') = (next_run_at IS NOT NULL)", name="active_has_next_run"),
        # The run tick's claim: active schedules by due time.
        Index("ix_schedules_due", "next_run_at", postgresql_where=text("status = 'active'")),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    # Monotonic insertion order: the stable cursor for list pagination.
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), nullable=False, unique=True)
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    from_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), nullable=False, index=True)
    to_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), nullable=False)
    amount_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    reference: Mapped[str | None] = mapped_column(String(255))
    cron: Mapped[str | None] = mapped_column(String(120))
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False, server_default="UTC")
    start_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    end_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    misfire_policy: Mapped[str] = mapped_column(String(16), nullable=False, server_default="run_once")
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="active")
    paused_reason: Mapped[str | None] = mapped_column(Text)
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    run_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    consecutive_failures: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class LedgerEntry(Base):
    """Immutable double-entry line (a trigger forbids UPDATE and DELETE)."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount_minor <> 0", name="amount_non_zero"),
        # One entry per account per transaction: a second application cannot insert.
        UniqueConstraint("transaction_id", "account_id", name="uq_ledger_entries_transaction_id"),
        Index("ix_ledger_entries_account_id_id", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    transaction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("transactions.id"), nullable=False)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), nullable=False)
    # Signed: negative leaves the account (debit), positive enters it (credit).
    amount_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    balance_after_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = _created_at()
    # The hash chain per account (db/ledger/hash_chain.py): SHA-256 hex over the fields
    # above and prev_hash, the hash of the account's previous entry (NULL for the first).
    hash: Mapped[str] = mapped_column(String(64), nullable=False)
    prev_hash: Mapped[str | None] = mapped_column(String(64))


class AuditLog(Base):
    """Append-only record of who did what (a trigger forbids UPDATE and DELETE)."""

    __tablename__ = "audit_logs"
    __table_args__ = (Index("ix_audit_logs_entity", "entity_type", "entity_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    entity_type: Mapped[str] = mapped_column(String(32), nullable=False)
    entity_id: Mapped[str] = mapped_column(String(64), nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = _created_at()


class Batch(Base):
    """A finance bulk file (or JSON item list): its lines become ordinary transactions
    with `batch_id`, applied many per DB transaction by `batches.apply_chunk`.

    The counters are kept by a statement-level trigger on `transactions` (migration
    0005), so whichever code path changes an item's status, the counts follow, and the
    CHECK makes "they add up to total_items" a database fact.
    """

    __tablename__ = "batches"
    __table_args__ = (
        CheckConstraint(_in("status", BATCH_STATUSES), name="status_valid"),
        CheckConstraint(_in("mode", BATCH_MODES), name="mode_valid"),
        CheckConstraint(_in("source", BATCH_SOURCES), name="source_valid"),
        CheckConstraint(
            "LEAST(pending_count, completed_count, failed_count, rejected_count, cancelled_count, "
            "dead_lettered_count) >= 0",
            name="counts_non_negative",
        ),
        CheckConstraint(
            "pending_count + completed_count + failed_count + rejected_count + cancelled_count "
            "+ dead_lettered_count = total_items",
            name="counts_add_up",
        ),
        UniqueConstraint("created_by", "idempotency_key", name="uq_batches_created_by_idempotency_key"),
        # The same content twice is a duplicate, unless the first batch moved no money.
        Index(
            "uq_batches_content_sha256",
            "content_sha256",
            unique=True,
            postgresql_where=text("status NOT IN ('failed', 'cancelled')"),
        ),
        Index("ix_batches_status_scheduled_for", "status", "scheduled_for"),
        # A batch is reversed at most once: one effective reversal batch each (a failed
        # or cancelled one moved nothing and, like a failed single reversal, blocks nothing).
        Index(
            "uq_batches_reverses",
            "reverses",
            unique=True,
            postgresql_where=text("reverses IS NOT NULL AND status NOT IN ('failed', 'cancelled')"),
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), nullable=False, unique=True)
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    status: Mapped[str] = mapped_column(String(24), nullable=False)
    mode: Mapped[str] = mapped_column(String(16), nullable=False, server_default="independent")
    source: Mapped[str] = mapped_column(String(8), nullable=False, server_default="api")
    # csv | json: how the stored upload (if any) is to be parsed.
    content_format: Mapped[str] = mapped_column(String(8), nullable=False, server_default="csv")
    filename: Mapped[str | None] = mapped_column(String(255))
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    content_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    reference: Mapped[str | None] = mapped_column(String(255))
    scheduled_for: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    total_items: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    pending_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    completed_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    failed_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    rejected_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    cancelled_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    dead_lettered_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # Processing cursor: the first line number not yet handed to a chunk. Chunks are
    # windows of line numbers, [next_line, next_line + chunk size), up to `last_line`.
    next_line: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_line: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # Failed chunk attempts since the cursor last moved: the stalled-batch sweeper waits
    # out the retry backoff they imply (workers.batches.resend_stalled).
    chunk_failures: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    failure_code: Mapped[str | None] = mapped_column(String(32))
    failure_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A batch reversal (db/batches/reversal.py): the batch whose completed lines it moves back.
    reverses: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id"))


class BatchUpload(Base):
    """The uploaded bytes of a batch waiting for the worker to validate them, in
    pieces (PostgreSQL is the one store every host shares). Deleted once ingested."""

    __tablename__ = "batch_uploads"

    batch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class BatchRejectedLine(Base):
    """An input line that did not become a transaction: why, with the raw fields as
    given (truncated) so results.csv can echo them. Accepted lines are transactions
    carrying `batch_id` and `batch_line`."""

    __tablename__ = "batch_rejected_lines"

    batch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


EVENT_TYPES = (
    "transaction.created",
    "transaction.completed",
    "transaction.failed",
    "transaction.cancelled",
    "transaction.dead_lettered",
    "transaction.reversed",
    "transaction.held",
    "transaction.captured",
    "transaction.voided",
    "transaction.expired",
    "batch.completed",
    "batch.completed_with_errors",
    "batch.failed",
    "batch.cancelled",
    "account.frozen",
    "account.unfrozen",
    "account.closed",
)
WEBHOOK_DELIVERY_STATUSES = ("pending", "delivering", "delivered", "failed")
CIRCUIT_STATES = ("closed", "open", "half_open")


class XID8(UserDefinedType):
    """PostgreSQL's 64-bit transaction id (`pg_current_xact_id()`); read as text."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


ischema_names["xid8"] = XID8  # so reflection (alembic check) knows the type


class Event(Base):
    """The transactional outbox: one row per state change worth telling, written in the
    transaction that makes the change (db/events/outbox.py). `xid` is the writer's
    transaction id, set by the database; the feed's SQL orders by (xid, seq)."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_xid_seq", "xid", "seq"),
        Index("ix_events_account_ids", "account_ids", postgresql_using="gin"),
        Index("ix_events_created_at", "created_at"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    xid: Mapped[str] = mapped_column(XID8, nullable=False, server_default=text("pg_current_xact_id()"))
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, unique=True)
    type: Mapped[str] = mapped_column(String(64), nullable=False)
    account_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(UUID(as_uuid=True)), nullable=False, server_default=text("'{}'")
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = _created_at()


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"
    __table_args__ = (CheckConstraint(_in("circuit_state", CIRCUIT_STATES), name="circuit_state_valid"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(64)), nullable=False)
    description: Mapped[str] = mapped_column(String(255), nullable=False, server_default="")
    # Fernet token of the signing secret (db/webhooks/secrets.py): shown once, never stored plain.
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    circuit_state: Mapped[str] = mapped_column(String(16), nullable=False, server_default="closed")
    consecutive_failures: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    circuit_opened_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    circuit_retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class WebhookDelivery(Base):
    """One event for one subscription: attempts, the last answer, and when to try next."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(_in("status", WEBHOOK_DELIVERY_STATUSES), name="status_valid"),
        UniqueConstraint("subscription_id", "event_id", name="uq_webhook_deliveries_subscription_id"),
        Index(
            "ix_webhook_deliveries_due",
            "subscription_id",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_subscription_created", "subscription_id", "created_at"),
        Index("ix_webhook_deliveries_event_id", "event_id"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), nullable=False
    )
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), nullable=False)
    event_type: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_latency_ms: Mapped[int | None] = mapped_column(Integer)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Retries stop `webhook_retry_window_s` after this (reset by a manual retry).
    window_started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class WebhookFanoutCursor(Base):
    """Where the fan-out stands in the event feed (one row, db/webhooks/dispatch.py)."""

    __tablename__ = "webhook_fanout_cursor"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    xid: Mapped[str] = mapped_column(XID8, nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
