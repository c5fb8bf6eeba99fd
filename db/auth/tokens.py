"""Access and refresh tokens: issue, rotate with reuse detection, revoke.

Refresh tokens are JWTs (typ `refresh`) whose `jti` is a `refresh_tokens` row that holds
only the token's SHA-256. One login starts a *family*; each refresh spends the presented
token and issues the next one in the same family. Presenting a spent token again means
two parties hold it (one of them stole it): the whole family is revoked, so the thief's
copy dies with the victim's, and the victim logs in again.

A session (a family) has an absolute lifetime: every token of it expires when the
login's first refresh token does, REFRESH_TOKEN_TTL_SECONDS after the login; rotating
never extends it. Access tokens carry their family (`fam`) and are refused once it is
revoked (reuse, logout), so revocation ends a session at once, not at the access
token's expiry.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from db.audit import repository as audit
from db.auth import repository as users_repo
from db.auth import token_repository as tokens_repo
from db.core import jwt_codec
from db.core.config import Settings
from db.core.errors import Unauthorized
from db.core.logs import get_logger
from db.models import RefreshToken, User

log = get_logger(__name__)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_access_token(
    settings: Settings,
    user_id: uuid.UUID,
    role: str,
    token_version: int = 0,
    family_id: uuid.UUID | None = None,
) -> tuple[str, int]:
    """A short-lived access token; `ver` must match `users.token_version` when it is
    used, and its family (`fam`, when issued by a login) must not be revoked."""
    family = {"fam": str(family_id)} if family_id else {}
    token = jwt_codec.encode(
        settings,
        typ="access",
        subject=user_id,
        ttl_s=settings.access_token_ttl_s,
        claims={"role": role, "ver": token_version, **family},
    )
    return token, settings.access_token_ttl_s


def issue_refresh_token(
    session: Session,
    settings: Settings,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    session_ends_at: datetime | None = None,
) -> str:
    """The next refresh token of `family_id`; it expires when the session does
    (`session_ends_at`, carried over on rotation; a new login starts the clock)."""
    token_id = uuid.uuid4()
    expires_at = session_ends_at or datetime.now(UTC) + timedelta(seconds=settings.refresh_token_ttl_s)
    expires_at = expires_at.replace(microsecond=0)  # a JWT `exp` has whole seconds
    token = jwt_codec.encode(
        settings,
        typ="refresh",
        subject=user_id,
        ttl_s=settings.refresh_token_ttl_s,
        jti=token_id,
        claims={"fam": str(family_id), "exp": expires_at},
    )
    session.add(
        RefreshToken(
            id=token_id,
            user_id=user_id,
            family_id=family_id,
            token_hash=_hash(token),
            expires_at=expires_at,
        )
    )
    session.flush()
    return token


def issue_pair(
    session: Session,
    settings: Settings,
    user: User,
    family_id: uuid.UUID | None = None,
    session_ends_at: datetime | None = None,
) -> TokenPair:
    family_id = family_id or uuid.uuid4()
    access, expires_in = issue_access_token(settings, user.id, user.role, user.token_version, family_id)
    refresh = issue_refresh_token(session, settings, user.id, family_id, session_ends_at)
    return TokenPair(access, refresh, expires_in)


def _presented_row(session: Session, settings: Settings, presented: str) -> RefreshToken | None:
    """The locked row of a validly signed refresh token, or None if we never issued it."""
    claims = jwt_codec.decode(settings, presented, "refresh")
    row = tokens_repo.get_for_update(session, claims["jti_id"])
    if (
        row is None
        or row.user_id != claims["sub_id"]
        or not hmac.compare_digest(row.token_hash, _hash(presented))
    ):
        return None
    return row


def rotate(session: Session, settings: Settings, presented: str) -> TokenPair | None:
    """Spend `presented` and return the next pair, or None (the caller answers 401).

    On reuse the family is revoked and audited *before* returning None, so the caller
    must commit in both cases.
    """
    row = _presented_row(session, settings, presented)
    if row is None:
        return None
    now = datetime.now(UTC)
    if row.spent_at is not None:
        revoked = tokens_repo.revoke_family(session, row.family_id, "reuse_detected", now)
        audit.record(
            session,
            action="auth.refresh_reuse_detected",
            entity_type="user",
            entity_id=row.user_id,
            data={"family_id": str(row.family_id), "revoked_tokens": revoked},
        )
        log.warning("auth.refresh_reuse_detected", user_id=str(row.user_id), family_id=str(row.family_id))
        return None
    if row.revoked_at is not None or row.expires_at <= now:
        return None
    user = users_repo.get(session, row.user_id)
    if user is None or not user.is_active:
        return None
    row.spent_at = now
    return issue_pair(session, settings, user, family_id=row.family_id, session_ends_at=row.expires_at)


def logout(session: Session, settings: Settings, presented: str) -> None:
    """Revoke the presented token's whole family: every token of that login session."""
    row = _presented_row(session, settings, presented)
    if row is None:
        raise Unauthorized(jwt_codec.INVALID_TOKEN)
    revoked = tokens_repo.revoke_family(session, row.family_id, "logout", datetime.now(UTC))
    audit.record(
        session,
        action="auth.logout",
        entity_type="user",
        entity_id=row.user_id,
        actor_id=row.user_id,
        data={"family_id": str(row.family_id), "revoked_tokens": revoked},
    )


def revoke_all(session: Session, user: User, reason: str) -> None:
    """Every token of `user` stops working now: access tokens through `token_version`,
    refresh tokens through their rows."""
    user.token_version = user.token_version + 1
    tokens_repo.revoke_user(session, user.id, reason, datetime.now(UTC))
    session.flush()
