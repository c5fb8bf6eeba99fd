"""The rollup tables of migration 0016 (its triggers write them; `rebuild` recomputes
them). Registered on the shared `Base`, so `alembic check` sees them."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from sqlalchemy import BigInteger, Date, Numeric, SmallInteger, String
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base


class DailyRollup(Base):
    """One shard of a (UTC day of creation, currency) figure: each backend adds to row
    `pg_backend_pid() % 16` (`16 + pid % 32752`, a row of its own, for a worker group's
    statuses written before it locks its accounts: migration 0019), and a day's figure
    is the sum of its shards."""

    __tablename__ = "analytics_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    created_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    completed_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    failed_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    # Minor units; NUMERIC because a day's sum can leave BIGINT.
    volume_minor: Mapped[Decimal] = mapped_column(Numeric, nullable=False, server_default="0")


class AccountDailyRollup(Base):
    """Money into and out of one account on one UTC day (by ledger entry)."""

    __tablename__ = "analytics_account_daily"

    account_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    incoming_minor: Mapped[Decimal] = mapped_column(Numeric, nullable=False, server_default="0")
    outgoing_minor: Mapped[Decimal] = mapped_column(Numeric, nullable=False, server_default="0")
    entry_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
