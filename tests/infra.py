"""Real PostgreSQL and Redis for the test suite.

Uses the servers on 127.0.0.1:5432 / :6379 when they answer (or TEST_DATABASE_URL /
TEST_REDIS_URL), otherwise starts the same embedded servers `ledgerq up` uses, so the
suite passes on a bare machine. Each run gets its own database (built by running the
Alembic migrations) and its own Redis key namespace, so parallel runs never collide.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

from db.ops.embedded import EmbeddedPostgres, EmbeddedRedis, port_open

_stoppers: list = []


def _server_url() -> str:
    if os.environ.get("TEST_DATABASE_URL"):
        return os.environ["TEST_DATABASE_URL"]
    if port_open("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/test"
    embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="ledgerq-test-pg-")))
    _stoppers.append(embedded.stop)
    return embedded.url.replace("postgresql+psycopg://", "postgresql://")


def _redis_url() -> str:
    if os.environ.get("TEST_REDIS_URL"):
        return os.environ["TEST_REDIS_URL"]
    if port_open("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0"
    embedded = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="ledgerq-test-redis-")))
    _stoppers.append(embedded.stop)
    return embedded.url


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


def provision() -> dict[str, str]:
    """Create this run's database and namespace; return the environment to use."""
    server = _server_url()
    name = f"ledgerq_test_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    database_url = _with_database(server, name).replace("postgresql://", "postgresql+psycopg://", 1)

    def drop() -> None:
        from db.session import dispose_engines

        dispose_engines()
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    _stoppers.append(drop)
    atexit.register(teardown)
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": _redis_url(),
        "LEDGERQ_REDIS_NAMESPACE": f"ledgerq-test-{secrets.token_hex(4)}",
    }


@contextlib.contextmanager
def scratch_database(prefix: str = "ledgerq_scratch") -> Iterator[str]:
    """An empty database on this run's server (its SQLAlchemy URL), dropped afterwards:
    for tests that migrate, restore or otherwise own a whole database."""
    from sqlalchemy.engine import make_url

    from db.core.config import get_settings

    url = make_url(get_settings().database_url)
    name = f"{prefix}_{secrets.token_hex(4)}"
    server = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def teardown() -> None:
    while _stoppers:
        try:
            _stoppers.pop()()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
