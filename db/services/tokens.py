"""Refresh tokens: opaque random strings, stored hashed, one family per login."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from db.models import RefreshToken


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_refresh_token(
    session: Session, user_id: uuid.UUID, ttl_s: int, family_id: uuid.UUID | None = None
) -> str:
    token = secrets.token_urlsafe(48)
    session.add(
        RefreshToken(
            user_id=user_id,
            family_id=family_id or uuid.uuid4(),
            token_hash=_hash(token),
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl_s),
        )
    )
    session.flush()
    return token
