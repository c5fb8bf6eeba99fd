"""The request's unit of work: opened lazily, committed by the route (the edge),
rolled back and closed at teardown whatever happened."""

from __future__ import annotations

from flask import Flask, g
from sqlalchemy.orm import Session

from db.session import UnitOfWork, session_factory


def get_uow() -> UnitOfWork:
    uow = g.get("uow")
    if uow is None:
        from flask import current_app

        uow = UnitOfWork(session_factory(current_app.config["LEDGERQ_SETTINGS"])())
        g.uow = uow
    return uow


def get_session() -> Session:
    return get_uow().session


def init_app(app: Flask) -> None:
    @app.teardown_appcontext
    def _close_uow(_exc):
        uow = g.pop("uow", None)
        if uow is not None:
            uow.rollback()  # no-op after a commit; undoes anything a failed request flushed
            uow.close()
