"""Rate versions: the newest version of a pair is its current rate (the index on
(base, quote, id) finds it in one probe); the table is append-only."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from db.models import FxRateVersion


def current(session: Session, base: str, quote: str) -> FxRateVersion | None:
    return session.scalars(
        select(FxRateVersion)
        .where(FxRateVersion.base == base, FxRateVersion.quote == quote)
        .order_by(FxRateVersion.id.desc())
        .limit(1)
    ).first()


def all_current(session: Session) -> list[FxRateVersion]:
    """Every pair's newest version, by base then quote."""
    return list(
        session.scalars(
            select(FxRateVersion)
            .ext(distinct_on(FxRateVersion.base, FxRateVersion.quote))
            .order_by(FxRateVersion.base, FxRateVersion.quote, FxRateVersion.id.desc())
        )
    )


def history(
    session: Session, base: str, quote: str, *, before_id: int | None, limit: int
) -> list[FxRateVersion]:
    """A pair's versions newest first, keyset-paginated on the id (limit+1 rows)."""
    query = select(FxRateVersion).where(FxRateVersion.base == base, FxRateVersion.quote == quote)
    if before_id is not None:
        query = query.where(FxRateVersion.id < before_id)
    return list(session.scalars(query.order_by(FxRateVersion.id.desc()).limit(limit + 1)))


def get(session: Session, version_id: int) -> FxRateVersion | None:
    return session.get(FxRateVersion, version_id)


def lock_pair(session: Session, base: str, quote: str) -> None:
    """Serialize rate changes of one pair until commit, so each change's audit row names
    the version it replaced (there may be no row to lock yet: an advisory lock)."""
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"ledgerq.fx:{base}/{quote}"))))


def insert(
    session: Session,
    *,
    base: str,
    quote: str,
    rate: Decimal,
    fee_bps: int,
    created_by: uuid.UUID,
    request_id: str | None,
) -> FxRateVersion:
    version = FxRateVersion(
        base=base, quote=quote, rate=rate, fee_bps=fee_bps, created_by=created_by, request_id=request_id
    )
    session.add(version)
    session.flush()
    return version
