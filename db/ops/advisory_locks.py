"""Session-level PostgreSQL advisory locks held on a dedicated connection: the
scheduler's leadership and the batch inbox scan. Held until unlocked or until the
connection closes (a crashed holder loses the lock with its session).

`key` is one bigint or two ints (class, key), as PostgreSQL's own functions take them."""

from __future__ import annotations

from sqlalchemy import Connection, func, select, text


def try_lock(connection: Connection, *key: int) -> bool:
    """Take the lock if nobody holds it; never blocks."""
    return bool(connection.execute(select(func.pg_try_advisory_lock(*key))).scalar())


def unlock(connection: Connection, *key: int) -> None:
    connection.execute(select(func.pg_advisory_unlock(*key)))


def still_connected(connection: Connection) -> None:
    """A round trip on the holding connection: raises DBAPIError once the session (and
    with it the lock) is gone."""
    connection.execute(text("SELECT 1"))
