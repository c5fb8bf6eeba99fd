"""The request's unit of work: opened lazily, committed by the route (the edge),
rolled back and closed at teardown whatever happened. A route marked
`@blp.reads_from_replica` reads through a session on DATABASE_READ_URL instead (its auth,
which runs before, stays on the primary)."""

from __future__ import annotations

from flask import Flask, g, request
from sqlalchemy.orm import Session

from db.session import UnitOfWork, read_session_factory, reading_unit, session_factory

# Requests that only read: their statements run outside an explicit transaction, on the
# autocommit engine (db/session.py get_autocommit_engine; under READ COMMITTED each
# statement has its own snapshot either way), which saves the BEGIN and the ROLLBACK
# round trips of every GET, and the isolation level's set and reset.
_READS_ONLY = frozenset({"GET", "HEAD", "OPTIONS"})


def get_uow() -> UnitOfWork:
    uow = g.get("uow")
    if uow is None:
        from flask import current_app

        settings = current_app.config["LEDGERQ_SETTINGS"]
        if request.method in _READS_ONLY:
            uow = reading_unit(settings)
        else:
            uow = UnitOfWork(session_factory(settings)())
        g.uow = uow
    return uow


def get_session() -> Session:
    if g.get("reads_from_replica"):
        return _read_session()
    return get_uow().session


def _read_session() -> Session:
    session = g.get("read_session")
    if session is None:
        from flask import current_app

        session = read_session_factory(current_app.config["LEDGERQ_SETTINGS"])()  # autocommit
        g.read_session = session
    return session


def init_app(app: Flask) -> None:
    @app.teardown_appcontext
    def _close_uow(_exc):
        uow = g.pop("uow", None)
        if uow is not None:
            uow.rollback()  # no-op after a commit; undoes anything a failed request flushed
            uow.close()
        read_session = g.pop("read_session", None)
        if read_session is not None:
            read_session.close()
