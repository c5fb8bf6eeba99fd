"""The pool's checkout check (db/session.py `_check_out`): a connection that sat idle is
pinged and replaced if its backend is gone; one in use a moment ago costs no ping."""

from __future__ import annotations

import pytest
from sqlalchemy import exc, inspect, text
from sqlalchemy.pool.base import ResetStyle

from db import session as db_session
from db.core.config import get_settings


@pytest.fixture
def engine():
    """A pool of its own (one connection), so killing its backend touches nothing else."""
    settings = get_settings().model_copy(update={"db_pool_size": 1})
    url = settings.database_url + ("&" if "?" in settings.database_url else "?") + "application_name=pooltest"
    engine = db_session._engine(url, settings)
    yield engine
    engine.dispose()
    db_session._engines.pop((url, False), None)


def _backend(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _kill(pid: int) -> None:
    with db_session.get_engine().begin() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()


def test_an_idle_connection_whose_backend_died_is_replaced_at_checkout(engine, monkeypatch):
    monkeypatch.setattr(db_session, "PING_WHEN_IDLE_FOR_S", 0.0)  # every checkout counts as idle
    first = _backend(engine)
    _kill(first)
    assert _backend(engine) != first  # the ping failed, the pool connected afresh: no error


def test_a_connection_used_a_moment_ago_is_not_pinged(engine, monkeypatch):
    monkeypatch.setattr(db_session, "PING_WHEN_IDLE_FOR_S", 3600.0)
    first = _backend(engine)
    _kill(first)
    # No ping, so the dead connection is handed out and the statement fails (the request
    # would answer 503); the pool then drops it and the next checkout connects afresh.
    with pytest.raises(exc.OperationalError):
        _backend(engine)
    assert _backend(engine) != first


def test_the_autocommit_engine_hands_out_connections_in_autocommit_from_the_start():
    """Requests that only read use it: nothing is set at checkout or reset at return."""
    engine = db_session.get_autocommit_engine(get_settings())
    assert engine.pool._reset_on_return is ResetStyle.reset_none  # no rollback at return
    for _ in range(2):  # a fresh connection, then one back from the pool: still autocommit
        with db_session.autocommit_session_factory()() as session:
            dbapi = session.connection().connection.dbapi_connection
            assert dbapi.autocommit
            assert session.execute(text("SELECT now() = statement_timestamp()")).scalar_one()


def test_a_reading_units_rollback_leaves_what_it_loaded_as_it_was(make):
    """Nothing to undo: the teardown's rollback does not expire the request's objects
    (a session rollback would, and the next attribute read would query again)."""
    from db.models import User

    user_id = make.user().id
    uow = db_session.reading_unit()
    user = uow.session.get(User, user_id)
    uow.rollback()
    assert not inspect(user).expired_attributes
    uow.close()
