"""The current principal, from the `Authorization: Bearer` access token.

Tokens are signed and checked by `db.core.jwt_codec` (HS256 pinned; `iss`, `aud`, `exp`, `iat`,
`jti`, `sub` required; `typ` must be `access`). The user's role, activity and token
version are checked on every request (db/auth/auth_states.py: cached per process and
dropped by the NOTIFY of the commit that changes them), so a deactivated user's tokens
stop working at once, a role change takes effect immediately, and a token whose `ver` is
older than `users.token_version` (password changed, user deactivated) is refused.
"""

from __future__ import annotations

import uuid

from flask import current_app, g, request

from api.extensions.database import get_session
from db.auth.auth_states import states_for
from db.auth.revoked_families import revoked_families_for
from db.auth.tokens import issue_access_token
from db.core import jwt_codec
from db.core.config import Settings
from db.core.errors import Forbidden, Unauthorized
from db.core.principal import Principal

__all__ = ["current_principal", "decode_token", "issue_access_token", "require_principal", "token_subject"]


def decode_token(settings: Settings, token: str, expected_type: str) -> dict:
    return jwt_codec.decode(settings, token, expected_type)


def _bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _access_claims() -> dict | None:
    """The verified claims of this request's access token, decoded once per request
    (the rate limiter needs the subject before the view runs, the view the rest);
    None when there is no valid one."""
    if "access_claims" not in g:
        token = _bearer_token()
        try:
            g.access_claims = (
                jwt_codec.decode(current_app.config["LEDGERQ_SETTINGS"], token, "access") if token else None
            )
        except Unauthorized:
            g.access_claims = None
    return g.access_claims


def token_subject() -> uuid.UUID | None:
    """The user id of a validly signed access token, without touching the database
    (rate-limit keys are computed before the view runs); None otherwise."""
    claims = _access_claims()
    return claims["sub_id"] if claims else None


def require_principal(roles: tuple[str, ...] = ()) -> Principal:
    if _bearer_token() is None:
        raise Unauthorized("Authentication required: send 'Authorization: Bearer <access token>'.")
    settings = current_app.config["LEDGERQ_SETTINGS"]
    claims = _access_claims()
    if claims is None:
        raise Unauthorized(jwt_codec.INVALID_TOKEN)
    user = states_for(settings.database_url).get(get_session(), claims["sub_id"])
    if user is None or not user.is_active or claims.get("ver") != user.token_version:
        raise Unauthorized(jwt_codec.INVALID_TOKEN)
    if "fam" in claims and _family_revoked(claims["fam"]):
        raise Unauthorized(jwt_codec.INVALID_TOKEN)  # its session was revoked (reuse, logout)
    principal = Principal(id=user.id, role=user.role, username=user.username)
    if roles and principal.role not in roles:
        raise Forbidden("Your role may not do this.")
    g.principal = principal
    return principal


def _family_revoked(family: object) -> bool:
    try:
        family_id = uuid.UUID(str(family))
    except ValueError:
        return True  # signed by us yet malformed: refuse rather than guess
    settings = current_app.config["LEDGERQ_SETTINGS"]
    return revoked_families_for(settings.database_url).get(get_session(), family_id)


def current_principal() -> Principal:
    return g.principal
