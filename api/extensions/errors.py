"""One place that turns exceptions into the error envelope. Clients never see a stack
trace; a client's mistake is never a 500."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import exc as sa_exc

from api.extensions.smorest import error_response
from db.core.errors import DomainError
from db.core.logs import get_logger

log = get_logger(__name__)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(error: DomainError):
        headers = (
            {"Retry-After": str(error.details["retry_after"])} if "retry_after" in error.details else None
        )
        return error_response(error.status, error.code, error.message, error.details, headers)

    @app.errorhandler(sa_exc.IntegrityError)
    def _integrity(error: sa_exc.IntegrityError):
        # A unique clash that slipped past a service's own check (a race): 409.
        log.info(
            "db.integrity_conflict",
            constraint=getattr(getattr(error.orig, "diag", None), "constraint_name", None),
        )
        return error_response(409, "conflict", "The request conflicts with existing data.")

    @app.errorhandler(sa_exc.DataError)
    def _unstorable(error: sa_exc.DataError):
        # The one place a value PostgreSQL cannot hold becomes the client's 422: an
        # integer past INTEGER/BIGINT, a NUL byte, text too long for its column. The
        # request's transaction is rolled back, so nothing was recorded.
        sqlstate = getattr(error.orig, "sqlstate", None)
        log.info("db.data_error", sqlstate=sqlstate)
        return error_response(
            422,
            "validation_error",
            "A value in the request is out of range or cannot be stored.",
            {"sqlstate": sqlstate} if sqlstate else None,
        )

    @app.errorhandler(sa_exc.OperationalError)
    @app.errorhandler(sa_exc.InterfaceError)
    @app.errorhandler(sa_exc.TimeoutError)
    def _database_unavailable(error):
        sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None) or ""
        if sqlstate.startswith("40") or sqlstate == "55P03":
            # Deadlock, serialization failure or lock timeout: the database is up, the
            # request collided with concurrent work. Rolled back, so safe to retry.
            log.warning("db.contention", sqlstate=sqlstate)
            return error_response(
                503,
                "unavailable",
                "The request collided with concurrent work and was not recorded. Retry with the same Idempotency-Key.",
                headers={"Retry-After": "1"},
            )
        log.error("db.unavailable", error=str(error).splitlines()[0][:300])
        return error_response(
            503,
            "unavailable",
            "The database is unreachable; the request was not recorded. Retry with the same Idempotency-Key.",
            headers={"Retry-After": "5"},
        )

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        # HTTPExceptions never get here: Api.handle_http_exception is more specific.
        log.exception("http.unhandled_error")
        return error_response(500, "internal_error", "Internal server error.")
