"""Signing and checking our JWTs (access and refresh), in one place.

HS256 with the algorithm pinned on decode, so `alg: none` and algorithm confusion
(HS512, RS256 with the secret as a "public key") are refused; `iss`, `aud`, `exp`, `iat`,
`jti` and `sub` are required, and a `typ` claim keeps a refresh token from being used
as an access token and the other way round. Any failure is the same 401: the client
learns nothing about which check failed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
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


class _Verified:
    """Tokens this process has verified, by their exact text (and the secret, issuer and
    audience they were checked against), with their claims: a client sends the same
    access token on every request, and checking its signature and parsing it again cost
    8 % of a GET /transactions/{id}'s CPU. A hit is re-checked for `exp` and `nbf` (PyJWT
    takes no leeway either); what can revoke a valid token (a deactivated user, a changed
    password, a revoked session) is checked by the caller on every request, as before.
    Bounded: the oldest entries go first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._claims: OrderedDict[tuple[str, str, str, str, str], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str, str, str]) -> dict[str, Any] | None:
        with self._lock:
            claims = self._claims.get(key)
        if claims is None:
            return None
        now = time.time()
        if not claims.get("nbf", 0) <= now < claims["exp"]:
            return None
        return dict(claims)  # callers may add to theirs

    def put(self, key: tuple[str, str, str, str, str], claims: dict[str, Any]) -> None:
        with self._lock:
            self._claims[key] = dict(claims)
            while len(self._claims) > self._size:
                self._claims.popitem(last=False)


_verified = _Verified(20_000)


def decode(settings: Settings, token: str, expected_type: str) -> dict[str, Any]:
    """The verified claims, or `Unauthorized` (one message for every failure)."""
    key = (token, expected_type, settings.jwt_secret, settings.jwt_issuer, settings.jwt_audience)
    cached = _verified.get(key)
    if cached is not None:
        return cached
    claims = _verify(settings, token, expected_type)
    _verified.put(key, claims)
    return claims


def _verify(settings: Settings, token: str, expected_type: str) -> dict[str, Any]:
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
