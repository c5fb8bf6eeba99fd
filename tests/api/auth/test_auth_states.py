"""The per-request user check and the session-revocation check are cached per process,
and a change committed anywhere (another process, plain SQL) still stops the tokens it
should: the commit's NOTIFY drops the cached entry."""

from __future__ import annotations

import psycopg

from db.auth.auth_states import states_for
from db.auth.revoked_families import revoked_families_for
from db.core import jwt_codec
from db.core.config import get_settings
from db.ops.notifications import libpq_dsn
from tests.fixtures.processes import wait_for


def _plain_sql(statement: str, *params) -> None:
    with psycopg.connect(libpq_dsn(get_settings().database_url), autocommit=True) as conn:
        conn.execute(statement, params)


def test_a_deactivation_committed_elsewhere_stops_cached_tokens(client, make):
    alice = make.user()
    states = states_for(get_settings().database_url)
    states.listener.start()
    assert states.listener.wait_listening(10)
    assert client.get("/api/v1/auth/me", headers=alice.headers).status_code == 200  # now cached

    _plain_sql("UPDATE users SET is_active = false WHERE id = %s", alice.id)  # not through this process
    wait_for(
        "the token to be refused",
        lambda: client.get("/api/v1/auth/me", headers=alice.headers).status_code == 401,
        5,
    )


def test_a_role_change_committed_elsewhere_takes_effect(client, make):
    bob = make.user("finance")
    states = states_for(get_settings().database_url)
    states.listener.start()
    assert states.listener.wait_listening(10)
    assert client.get("/api/v1/admin/queues", headers=bob.headers).status_code == 403
    assert client.get("/api/v1/accounts?limit=1", headers=bob.headers).status_code == 200

    _plain_sql("UPDATE users SET role = 'customer' WHERE id = %s", bob.id)
    me = lambda: client.get("/api/v1/auth/me", headers=bob.headers).json["role"]  # noqa: E731
    wait_for("the new role", lambda: me() == "customer", 5)  # < the cache TTL (10 s)


def _login(client, user) -> tuple[dict[str, str], str]:
    tokens = client.post(
        "/api/v1/auth/login", json={"username": user.username, "password": user.password}
    ).json
    return {"Authorization": f"Bearer {tokens['access_token']}"}, tokens["refresh_token"]


def test_a_session_revoked_elsewhere_stops_its_cached_access_token(client, make):
    carol = make.user()
    headers, _refresh = _login(client, carol)
    other_session, _ = _login(client, carol)
    families = revoked_families_for(get_settings().database_url)
    families.listener.start()
    assert families.listener.wait_listening(10)
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200  # "not revoked" now cached
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200

    family = jwt_codec.decode(get_settings(), headers["Authorization"][7:], "access")["fam"]
    _plain_sql(
        "UPDATE refresh_tokens SET revoked_at = now(), revoked_reason = 'logout' WHERE family_id = %s", family
    )
    wait_for(
        "the revoked session's token to be refused",
        lambda: client.get("/api/v1/auth/me", headers=headers).status_code == 401,
        5,  # < the cache TTL (10 s): the NOTIFY did it
    )
    assert client.get("/api/v1/auth/me", headers=other_session).status_code == 200  # only that session


def test_a_logout_stops_the_sessions_cached_access_token_at_its_commit(client, make):
    dave = make.user()
    headers, refresh = _login(client, dave)
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200  # cached
    assert client.post("/api/v1/auth/logout", json={"refresh_token": refresh}).status_code == 204
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401  # no wait at all
