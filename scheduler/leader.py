"""Leader election: one active scheduler, the others stand by.

The leader holds a session-level PostgreSQL advisory lock on a dedicated connection
(outside the pool, autocommit, so it is never idle in a transaction). The lock lives
exactly as long as that session: a crashed or partitioned leader loses it when
PostgreSQL notices the dead connection, and a standby's next `acquire()` wins.

Leadership only avoids duplicate ticks; it is not what makes releases exactly-once.
For a moment two processes can both believe they lead (the old leader learns it lost
the lock at its next `acquire()`); the actors' FOR UPDATE SKIP LOCKED claims keep
that harmless.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import Connection, create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from db.core.logs import get_logger
from db.ops import advisory_locks

log = get_logger(__name__)

# Arbitrary but fixed: every scheduler of one database competes for this key.
LEADER_LOCK_KEY = 0x6C65_6467_6572_71  # "ledgerq"


class LeaderLock:
    def __init__(self, database_url: str, key: int = LEADER_LOCK_KEY) -> None:
        self.key = key
        self._engine = create_engine(
            database_url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={
                "connect_timeout": 5,
                # Notice a dead network path within ~a minute, not the kernel's two hours.
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
            },
        )
        self._connection: Connection | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None

    def acquire(self) -> bool:
        """Try to become (or confirm we still are) the leader; never blocks."""
        if self._connection is not None:
            try:
                advisory_locks.still_connected(self._connection)
                return True
            except DBAPIError as exc:
                log.error("scheduler.leadership_lost", error=str(exc).splitlines()[0][:200])
                self._close()
                return False
        try:
            connection = self._engine.connect()
        except DBAPIError as exc:
            log.warning("scheduler.leader_lock_unreachable", error=str(exc).splitlines()[0][:200])
            return False
        try:
            won = advisory_locks.try_lock(connection, self.key)
        except DBAPIError:
            connection.close()
            return False
        if won:
            self._connection = connection
        else:
            connection.close()
        return won

    def release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(DBAPIError):  # closing the session releases it anyway
                advisory_locks.unlock(self._connection, self.key)
            self._close()
        self._engine.dispose()

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(DBAPIError):
                connection.close()
