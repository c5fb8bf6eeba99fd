"""One documented guarantee for a login session (deployment/AUTH.md, "Sessions"): it
ends REFRESH_TOKEN_TTL_SECONDS after the login whatever the rotations, and every token
of its family, access tokens included, stops working the moment the family is revoked."""

from __future__ import annotations

import time

import jwt

from tests.fixtures.http import app_with, bearer, login, refresh

ME = "/api/v1/auth/me"


def test_rotation_does_not_extend_the_session(make):
    """Each rotation granted a fresh 14 days, so a session never had to end."""
    alice = make.user()
    client = app_with(refresh_token_ttl_s=10).test_client()
    first = login(client, alice.username)
    end = jwt.decode(first["refresh_token"], options={"verify_signature": False})["exp"]
    current = first["refresh_token"]
    for _ in range(2):
        time.sleep(1.1)
        response = refresh(client, current)
        assert response.status_code == 200, response.json
        current = response.json["refresh_token"]
        assert jwt.decode(current, options={"verify_signature": False})["exp"] == end
    time.sleep(max(0.0, end - time.time()) + 1.1)
    assert refresh(client, current).status_code == 401


def test_an_access_token_dies_with_its_family_on_reuse(client, make):
    alice = make.user()
    stolen = login(client, alice.username)
    other_device = login(client, alice.username)
    current = refresh(client, stolen["refresh_token"]).json
    assert client.get(ME, headers=bearer(current["access_token"])).status_code == 200

    assert refresh(client, stolen["refresh_token"]).status_code == 401  # reuse: family revoked

    for access in (stolen["access_token"], current["access_token"]):
        refused = client.get(ME, headers=bearer(access))
        assert refused.status_code == 401 and refused.json["error"]["code"] == "unauthorized"
    assert client.get(ME, headers=bearer(other_device["access_token"])).status_code == 200


def test_logout_ends_the_sessions_access_tokens_too(client, make):
    alice = make.user()
    session = login(client, alice.username)
    assert (
        client.post("/api/v1/auth/logout", json={"refresh_token": session["refresh_token"]}).status_code
        == 204
    )
    assert client.get(ME, headers=bearer(session["access_token"])).status_code == 401
