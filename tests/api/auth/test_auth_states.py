"""The per-request user check is cached per process, and a change committed anywhere
(another process, plain SQL) still stops the user's tokens: the commit's NOTIFY drops the
cached state."""

from __future__ import annotations

import psycopg

from db.auth.auth_states import states_for
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
