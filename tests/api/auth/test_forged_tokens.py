"""Every way to fake, stretch or misuse a token gets the same 401 `unauthorized`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from tests.fixtures.http import bearer, login
from tests.fixtures.tokens import b64, claims, sign, unsigned

SECRET_OF_SOMEONE_ELSE = "another-secret-that-is-also-32-bytes-long!!"


def _tampered(claims) -> str:
    header, _payload, signature = sign(claims).split(".")
    return f"{header}.{b64({**claims, 'role': 'admin'})}.{signature}"


def _bad_signature(claims) -> str:
    token = sign(claims)
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


past = datetime.now(UTC) - timedelta(hours=2)
future = datetime.now(UTC) + timedelta(hours=2)

FORGERIES = {
    "alg none": lambda uid: unsigned(claims(uid)),
    "alg none, admin role": lambda uid: unsigned(claims(uid, role="admin")),
    "wrong key": lambda uid: sign(claims(uid), key=SECRET_OF_SOMEONE_ELSE),
    "HS512 with the right key (algorithm not pinned?)": lambda uid: sign(claims(uid), algorithm="HS512"),
    "expired": lambda uid: sign(claims(uid, iat=past, nbf=past, exp=past + timedelta(minutes=15))),
    "not yet valid": lambda uid: sign(claims(uid, nbf=future)),
    "tampered payload": lambda uid: _tampered(claims(uid)),
    "tampered signature": lambda uid: _bad_signature(claims(uid)),
    "wrong audience": lambda uid: sign(claims(uid, aud="some-other-api")),
    "wrong issuer": lambda uid: sign(claims(uid, iss="evil-issuer")),
    "no exp": lambda uid: sign(claims(uid, exp=None)),
    "no iat": lambda uid: sign(claims(uid, iat=None)),
    "no jti": lambda uid: sign(claims(uid, jti=None)),
    "no aud": lambda uid: sign(claims(uid, aud=None)),
    "no iss": lambda uid: sign(claims(uid, iss=None)),
    "no typ": lambda uid: sign(claims(uid, typ=None)),
    "refresh token used as access token": lambda uid: sign(claims(uid, typ="refresh")),
    "stale token version": lambda uid: sign(claims(uid, ver=-1)),
    "no token version": lambda uid: sign(claims(uid, ver=None)),
    "subject is not a uuid": lambda uid: sign(claims(uid, sub="admin")),
    "subject does not exist": lambda uid: sign(claims(uuid.uuid4())),
    "garbage": lambda uid: "definitely-not-a-jwt",
    "empty segments": lambda uid: "..",
}


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the HS512 forgery
@pytest.mark.parametrize("forgery", FORGERIES.values(), ids=FORGERIES.keys())
def test_forged_access_token_is_unauthorized(client, make, forgery):
    alice = make.user()
    control = client.get("/api/v1/auth/me", headers=bearer(sign(claims(alice.id))))
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
    return claims(user_id, typ="refresh", fam=str(uuid.uuid4()), role=None, ver=None, **changes)


REFRESH_FORGERIES = {
    "access token used as refresh token": lambda client, user: login(client, user.username)["access_token"],
    "never issued (jti unknown)": lambda client, user: sign(_refresh_claims(user.id)),
    "wrong key": lambda client, user: sign(_refresh_claims(user.id), key=SECRET_OF_SOMEONE_ELSE),
    "alg none": lambda client, user: unsigned(_refresh_claims(user.id)),
    "expired": lambda client, user: sign(
        _refresh_claims(user.id, iat=past, nbf=past, exp=past + timedelta(minutes=1))
    ),
    "wrong audience": lambda client, user: sign(_refresh_claims(user.id, aud="some-other-api")),
    "issued token with another subject": lambda client, user: _resign_with_subject(
        login(client, user.username)["refresh_token"], uuid.uuid4()
    ),
    "tampered signature": lambda client, user: login(client, user.username)["refresh_token"][:-4] + "AAAA",
}


def _resign_with_subject(token: str, subject: uuid.UUID) -> str:
    """A real refresh token's jti under another subject, re-signed with the right key
    (as if the key had leaked): the row must still not accept it."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return sign({**claims, "sub": str(subject)})


@pytest.mark.parametrize("forgery", REFRESH_FORGERIES.values(), ids=REFRESH_FORGERIES.keys())
def test_forged_refresh_token_is_unauthorized(client, make, forgery):
    alice = make.user()
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": forgery(client, alice)})
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
