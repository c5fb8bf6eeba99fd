"""Signing and checking our JWTs (access and refresh), in one place.

HS256 with the algorithm pinned on decode, so `alg: none` and algorithm confusion
(HS512, RS256 with the secret as a "public key") are refused; `iss`, `aud`, `exp`, `iat`,
`jti` and `sub` are required, and a `typ` claim keeps a refresh token from being used
as an access token and the other way round. Any failure is the same 401: the client
learns nothing about which check failed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from db.core.config import Settings
from db.core.errors import Unauthorized

ALGORITHM = "HS256"
INVALID_TOKEN = "The token is missing, invalid or expired."


def encode(
    settings: Settings,
    *,
    typ: str,
    subject: uuid.UUID,
    ttl_s: int,
    jti: uuid.UUID | None = None,
    claims: dict[str, Any] | None = None,
) -> str:
    now = datetime.now(UTC)
    payload = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(subject),
        "typ": typ,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(seconds=ttl_s),
        "jti": str(jti or uuid.uuid4()),
        **(claims or {}),
    }
    return jwt.encode(payload, settings.jwt_secret, algorithm=ALGORITHM)


def decode(settings: Settings, token: str, expected_type: str) -> dict[str, Any]:
    """The verified claims, or `Unauthorized` (one message for every failure)."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "jti", "sub", "iss", "aud"]},
        )
        claims["sub_id"] = uuid.UUID(claims["sub"])
        claims["jti_id"] = uuid.UUID(claims["jti"])
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError):
        raise Unauthorized(INVALID_TOKEN) from None
    if claims.get("typ") != expected_type:
        raise Unauthorized(INVALID_TOKEN)
    return claims
