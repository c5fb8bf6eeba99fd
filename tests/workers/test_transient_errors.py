"""An attempt that was slow or interrupted is retried, never dead-lettered: a time limit
is transient, an interrupted attempt's connection is thrown away (never handed to the next
message half-used), and an error from a broken connection is transient."""

from __future__ import annotations

import pytest
from dramatiq.middleware.time_limit import TimeLimitExceeded
from psycopg import pq
from sqlalchemy import text

from db.core.config import Settings
from db.session import get_engine, unit_of_work
from workers.middleware import is_transient


def test_a_time_limit_is_transient():
    # The row lock makes a retry safe: the attempt that was cut off committed nothing.
    assert is_transient(TimeLimitExceeded())


def test_an_interrupted_attempt_leaves_no_half_used_connection_in_the_pool():
    engine = get_engine()
    engine.dispose()
    with pytest.raises(TimeLimitExceeded), unit_of_work() as uow:
        raw = uow.session.connection().connection.dbapi_connection
        raw.pgconn.send_query(b"SELECT pg_sleep(0.2)")  # a query in flight...
        raise TimeLimitExceeded()  # ...when the time limit interrupts the thread
    assert raw.closed or raw.info.transaction_status == pq.TransactionStatus.IDLE
    for _ in range(engine.pool.size() + 1):  # whichever connection comes next works
        with unit_of_work() as uow:
            assert uow.session.execute(text("SELECT 1")).scalar() == 1


def test_any_error_from_a_broken_connection_is_transient():
    errors = []
    with unit_of_work() as uow:
        raw = uow.session.connection().connection.dbapi_connection
        raw.pgconn.send_query(b"SELECT 1")  # the state an interrupted attempt leaves behind
        for use in (
            lambda: setattr(raw, "autocommit", True),  # psycopg's own ProgrammingError
            lambda: uow.session.execute(text("SELECT 1")),  # wrapped by SQLAlchemy
        ):
            with pytest.raises(Exception) as raised:
                use()
            errors.append(raised.value)
        uow.session.invalidate()
    assert [is_transient(error) for error in errors] == [True, True], errors


def test_the_time_limit_stays_above_the_lock_and_statement_timeouts():
    settings = Settings()
    assert settings.apply_time_limit_ms > max(settings.db_lock_timeout_ms, settings.db_statement_timeout_ms)
    with pytest.raises(ValueError, match="WORKER_APPLY_TIME_LIMIT_MS"):
        Settings(WORKER_APPLY_TIME_LIMIT_MS=1500, LEDGERQ_DB_LOCK_TIMEOUT_MS=3000)
