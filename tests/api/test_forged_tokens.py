"""Every way to fake, stretch or misuse a token gets the same 401 `unauthorized`."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from db.core.config import get_settings
from tests.api.helpers import bearer, login

SECRET_OF_SOMEONE_ELSE = "another-secret-that-is-also-32-bytes-long!!"


def _claims(user_id, **changes):
    settings = get_settings()
    now = datetime.now(UTC)
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user_id),
        "typ": "access",
        "role": "customer",
        "ver": 0,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "jti": str(uuid.uuid4()),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims, key=None, algorithm="HS256"):
    return jwt.encode(claims, key or get_settings().jwt_secret, algorithm=algorithm)


def _b64(data: dict) -> str:
    raw = json.dumps(data, default=lambda v: int(v.timestamp())).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unsigned(claims) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def _tampered(claims) -> str:
    header, _payload, signature = _sign(claims).split(".")
    return f"{header}.{_b64({**claims, 'role': 'admin'})}.{signature}"


def _bad_signature(claims) -> str:
    token = _sign(claims)
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


past = datetime.now(UTC) - timedelta(hours=2)
future = datetime.now(UTC) + timedelta(hours=2)

FORGERIES = {
    "alg none": lambda uid: _unsigned(_claims(uid)),
    "alg none, admin role": lambda uid: _unsigned(_claims(uid, role="admin")),
    "wrong key": lambda uid: _sign(_claims(uid), key=SECRET_OF_SOMEONE_ELSE),
    "HS512 with the right key (algorithm not pinned?)": lambda uid: _sign(_claims(uid), algorithm="HS512"),
    "expired": lambda uid: _sign(_claims(uid, iat=past, nbf=past, exp=past + timedelta(minutes=15))),
    "not yet valid": lambda uid: _sign(_claims(uid, nbf=future)),
    "tampered payload": lambda uid: _tampered(_claims(uid)),
    "tampered signature": lambda uid: _bad_signature(_claims(uid)),
    "wrong audience": lambda uid: _sign(_claims(uid, aud="some-other-api")),
    "wrong issuer": lambda uid: _sign(_claims(uid, iss="evil-issuer")),
    "no exp": lambda uid: _sign(_claims(uid, exp=None)),
    "no iat": lambda uid: _sign(_claims(uid, iat=None)),
    "no jti": lambda uid: _sign(_claims(uid, jti=None)),
    "no aud": lambda uid: _sign(_claims(uid, aud=None)),
    "no iss": lambda uid: _sign(_claims(uid, iss=None)),
    "no typ": lambda uid: _sign(_claims(uid, typ=None)),
    "refresh token used as access token": lambda uid: _sign(_claims(uid, typ="refresh")),
    "stale token version": lambda uid: _sign(_claims(uid, ver=-1)),
    "no token version": lambda uid: _sign(_claims(uid, ver=None)),
    "subject is not a uuid": lambda uid: _sign(_claims(uid, sub="admin")),
    "subject does not exist": lambda uid: _sign(_claims(uuid.uuid4())),
    "garbage": lambda uid: "definitely-not-a-jwt",
    "empty segments": lambda uid: "..",
}


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the HS512 forgery
@pytest.mark.parametrize("forgery", FORGERIES.values(), ids=FORGERIES.keys())
def test_forged_access_token_is_unauthorized(client, make, forgery):
    alice = make.user()
    control = client.get("/api/v1/auth/me", headers=bearer(_sign(_claims(alice.id))))
    assert control.status_code == 200, "the honest token of this table must work"

    response = client.get("/api/v1/auth/me", headers=bearer(forgery(alice.id)))
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
    assert response.json["error"]["message"] == "The token is missing, invalid or expired."


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer    ", "Basic dXNlcjpwYXNz", "Token abc"],
    ids=["none", "scheme only", "blank token", "basic auth", "other scheme"],
)
def test_missing_or_malformed_authorization_header_is_unauthorized(client, header):
    response = client.get("/api/v1/auth/me", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"


def _refresh_claims(user_id, **changes):
    return _claims(user_id, typ="refresh", fam=str(uuid.uuid4()), role=None, ver=None, **changes)


REFRESH_FORGERIES = {
    "access token used as refresh token": lambda client, user: login(client, user.username)["access_token"],
    "never issued (jti unknown)": lambda client, user: _sign(_refresh_claims(user.id)),
    "wrong key": lambda client, user: _sign(_refresh_claims(user.id), key=SECRET_OF_SOMEONE_ELSE),
    "alg none": lambda client, user: _unsigned(_refresh_claims(user.id)),
    "expired": lambda client, user: _sign(
        _refresh_claims(user.id, iat=past, nbf=past, exp=past + timedelta(minutes=1))
    ),
    "wrong audience": lambda client, user: _sign(_refresh_claims(user.id, aud="some-other-api")),
    "issued token with another subject": lambda client, user: _resign_with_subject(
        login(client, user.username)["refresh_token"], uuid.uuid4()
    ),
    "tampered signature": lambda client, user: login(client, user.username)["refresh_token"][:-4] + "AAAA",
}


def _resign_with_subject(token: str, subject: uuid.UUID) -> str:
    """A real refresh token's jti under another subject, re-signed with the right key
    (as if the key had leaked): the row must still not accept it."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return _sign({**claims, "sub": str(subject)})


@pytest.mark.parametrize("forgery", REFRESH_FORGERIES.values(), ids=REFRESH_FORGERIES.keys())
def test_forged_refresh_token_is_unauthorized(client, make, forgery):
    alice = make.user()
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": forgery(client, alice)})
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
