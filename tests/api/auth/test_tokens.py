"""Login, refresh rotation with reuse detection, logout, and tokens of deactivated users."""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import select

from db.models import RefreshToken
from db.session import unit_of_work
from tests.fixtures.http import bearer, login, refresh
from tests.fixtures.ledger import audit_events


def test_login_returns_a_bearer_pair_that_authenticates(client, make):
    alice = make.user()
    tokens = login(client, alice.username)
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 15 * 60
    me = client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json["id"] == str(alice.id)
    assert "password_hash" not in me.json and "password" not in me.json


def test_login_by_email_works_case_insensitively(client, make):
    alice = make.user()
    response = client.post(
        "/api/v1/auth/login",
        json={"email": f"{alice.username}@EXAMPLE.com".upper(), "password": alice.password},
    )
    assert response.status_code == 200


def test_wrong_username_and_wrong_password_look_the_same(client, make):
    alice = make.user()
    wrong_password = client.post(
        "/api/v1/auth/login", json={"username": alice.username, "password": "not the password!!"}
    )
    no_such_user = client.post(
        "/api/v1/auth/login", json={"username": "nobody-at-all", "password": "not the password!!"}
    )
    assert wrong_password.status_code == no_such_user.status_code == 401
    assert wrong_password.json == no_such_user.json
    assert wrong_password.json["error"]["code"] == "unauthorized"


def test_login_attempts_are_audited_with_the_reason(client, make):
    alice = make.user()
    client.post("/api/v1/auth/login", json={"username": alice.username, "password": "wrong password!!"})
    login(client, alice.username)
    client.post("/api/v1/auth/login", json={"username": "ghost-user", "password": "wrong password!!"})

    actions = audit_events(alice.id)
    assert ("auth.login_failed", {"login": alice.username, "reason": "bad_password"}) in actions
    assert ("auth.login_succeeded", {}) in actions
    assert ("auth.login_failed", {"login": "ghost-user", "reason": "unknown_user"}) in audit_events("unknown")


def test_refresh_rotates_the_pair(client, make):
    alice = make.user()
    first = login(client, alice.username)
    second = refresh(client, first["refresh_token"])
    assert second.status_code == 200
    assert second.json["refresh_token"] != first["refresh_token"]
    assert client.get("/api/v1/auth/me", headers=bearer(second.json["access_token"])).status_code == 200
    third = refresh(client, second.json["refresh_token"])
    assert third.status_code == 200


def test_refresh_tokens_are_stored_only_as_hashes(client, make):
    alice = make.user()
    token = login(client, alice.username)["refresh_token"]
    with unit_of_work() as uow:
        hashes = set(uow.session.scalars(select(RefreshToken.token_hash)))
    assert hashlib.sha256(token.encode()).hexdigest() in hashes
    assert token not in hashes


def test_reusing_a_spent_refresh_token_revokes_the_whole_family(client, make):
    alice = make.user()
    stolen = login(client, alice.username)["refresh_token"]
    other_device = login(client, alice.username)["refresh_token"]  # a separate family
    current = refresh(client, stolen).json["refresh_token"]

    replay = refresh(client, stolen)
    assert replay.status_code == 401
    assert replay.json["error"]["code"] == "unauthorized"
    # The legitimate holder's newer token died with the family...
    assert refresh(client, current).status_code == 401
    # ...while another login's family is untouched.
    assert refresh(client, other_device).status_code == 200
    assert "auth.refresh_reuse_detected" in [action for action, _ in audit_events(alice.id)]
    with unit_of_work() as uow:
        reasons = set(uow.session.scalars(select(RefreshToken.revoked_reason)))
    assert "reuse_detected" in reasons


def test_logout_revokes_the_family_but_not_other_logins(client, make):
    alice = make.user()
    session_a = login(client, alice.username)
    session_b = login(client, alice.username)
    rotated = refresh(client, session_a["refresh_token"]).json["refresh_token"]

    response = client.post("/api/v1/auth/logout", json={"refresh_token": rotated})
    assert response.status_code == 204
    assert refresh(client, rotated).status_code == 401
    assert refresh(client, session_b["refresh_token"]).status_code == 200
    assert "auth.logout" in [action for action, _ in audit_events(alice.id)]


def test_logout_with_a_forged_token_is_unauthorized(client):
    response = client.post("/api/v1/auth/logout", json={"refresh_token": "not.a.token"})
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"


def test_deactivated_users_tokens_stop_working_at_once(client, make):
    admin, alice = make.user("admin"), make.user()
    tokens = login(client, alice.username)
    assert client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"])).status_code == 200

    assert client.delete(f"/api/v1/users/{alice.id}", headers=admin.headers).status_code == 204

    assert client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"])).status_code == 401
    assert client.get("/api/v1/auth/me", headers=alice.headers).status_code == 401
    assert refresh(client, tokens["refresh_token"]).status_code == 401
    again = client.post("/api/v1/auth/login", json={"username": alice.username, "password": alice.password})
    assert again.status_code == 401


def test_reactivation_does_not_revive_old_tokens(client, make):
    admin, alice = make.user("admin"), make.user()
    tokens = login(client, alice.username)
    client.delete(f"/api/v1/users/{alice.id}", headers=admin.headers)
    reactivated = client.put(f"/api/v1/users/{alice.id}", json={"is_active": True}, headers=admin.headers)
    assert reactivated.status_code == 200 and reactivated.json["is_active"] is True

    assert client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"])).status_code == 401
    assert refresh(client, tokens["refresh_token"]).status_code == 401
    fresh = login(client, alice.username)
    assert client.get("/api/v1/auth/me", headers=bearer(fresh["access_token"])).status_code == 200


def test_register_creates_a_customer_and_refuses_a_role(client):
    sneaky = client.post(
        "/api/v1/auth/register",
        json={
            "username": "mallory",
            "email": "m@example.com",
            "password": "long enough pw!",
            "role": "admin",
        },
    )
    assert sneaky.status_code == 422
    assert "role" in sneaky.json["error"]["details"]

    created = client.post(
        "/api/v1/auth/register",
        json={"username": "mallory", "email": "m@example.com", "password": "long enough pw!"},
    )
    assert created.status_code == 201
    assert created.json["role"] == "customer"
    uuid.UUID(created.json["id"])


def test_register_requires_twelve_character_passwords(client):
    response = client.post(
        "/api/v1/auth/register",
        json={"username": "shorty", "email": "s@example.com", "password": "elevenchars"},
    )
    assert response.status_code == 422
    assert "password" in response.json["error"]["details"]
