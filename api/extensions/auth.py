"""JWT access tokens and the current principal.

Tokens are HS256 with the algorithm pinned on decode (no `alg: none`, no algorithm
confusion); `iss`, `aud`, `exp`, `iat`, `jti` and `sub` are required. The user is
reloaded on every request, so a deactivated user's tokens stop working at once and a
role change takes effect immediately.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt
from flask import g, request

from api.extensions.database import get_session
from db.config import Settings
from db.errors import Forbidden, Unauthorized
from db.principal import Principal
from db.repositories import users as users_repo

ALGORITHM = "HS256"


def issue_access_token(settings: Settings, user_id: uuid.UUID, role: str) -> tuple[str, int]:
    now = datetime.now(UTC)
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user_id),
        "role": role,
        "typ": "access",
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(seconds=settings.access_token_ttl_s),
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM), settings.access_token_ttl_s


def decode_token(settings: Settings, token: str, expected_type: str) -> dict:
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "jti", "sub", "iss", "aud"]},
        )
    except jwt.PyJWTError:
        raise Unauthorized("The token is missing, invalid or expired.") from None
    if claims.get("typ") != expected_type:
        raise Unauthorized("The token is missing, invalid or expired.")
    return claims


def _bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authentication required: send 'Authorization: Bearer <access token>'.")
    return token.strip()


def require_principal(roles: tuple[str, ...] = ()) -> Principal:
    from flask import current_app

    settings: Settings = current_app.config["LEDGERQ_SETTINGS"]
    claims = decode_token(settings, _bearer_token(), "access")
    try:
        user_id = uuid.UUID(claims["sub"])
    except ValueError:
        raise Unauthorized("The token is missing, invalid or expired.") from None
    user = users_repo.get(get_session(), user_id)
    if user is None or not user.is_active:
        raise Unauthorized("The token is missing, invalid or expired.")
    principal = Principal(id=user.id, role=user.role, username=user.username)
    if roles and principal.role not in roles:
        raise Forbidden("Your role may not do this.")
    g.principal = principal
    return principal


def current_principal() -> Principal:
    return g.principal
