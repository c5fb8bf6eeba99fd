"""Refresh-token rows: lookups under lock and bulk revocation."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import RefreshToken


def get_for_update(session: Session, token_id: uuid.UUID) -> RefreshToken | None:
    """Lock the row: two refreshes racing with one token are decided one after the other."""
    return session.scalars(
        select(RefreshToken)
        .where(RefreshToken.id == token_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


# session.info key: families this transaction revoked, forgotten by every process's
# cache at the commit (db/auth/revoked_families.py).
REVOKED_FAMILIES = "ledgerq_revoked_families"


def _revoke(session: Session, where, reason: str, now: datetime) -> int:
    statement = (
        update(RefreshToken)
        .where(where, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
        .returning(RefreshToken.family_id)
        .execution_options(synchronize_session=False)
    )
    families = list(session.scalars(statement))
    session.info.setdefault(REVOKED_FAMILIES, set()).update(families)
    return len(families)


def family_revoked(session: Session, family_id: uuid.UUID) -> bool:
    """Revocation marks every row of the family, so any revoked row says it."""
    return (
        session.scalar(
            select(RefreshToken.id)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_not(None))
            .limit(1)
        )
        is not None
    )


def revoke_family(session: Session, family_id: uuid.UUID, reason: str, now: datetime) -> int:
    return _revoke(session, RefreshToken.family_id == family_id, reason, now)


def revoke_user(session: Session, user_id: uuid.UUID, reason: str, now: datetime) -> int:
    return _revoke(session, RefreshToken.user_id == user_id, reason, now)
