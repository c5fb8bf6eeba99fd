"""Engine, sessions and the unit of work.

Commit once, at the edge: a request or an actor owns one `UnitOfWork`; services only
`flush()`. Messages are *recorded* with `uow.enqueue(...)` and sent only after the
commit succeeded (dropped on rollback), so a worker never sees a row that does not
exist yet and a rolled-back request never sends anything.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import Counter
from psycopg import pq
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from db.core.config import Settings, get_settings
from db.core.logs import get_logger
from db.ops import tracing

log = get_logger(__name__)

ENQUEUE_FAILURES = Counter(
    "ledgerq_enqueue_failures_total", "Messages not sent after commit (Redis down); the sweeper recovers them"
)

_lock = threading.Lock()
_engines: dict[tuple[str, bool], Engine] = {}


def get_engine(settings: Settings | None = None) -> Engine:
    """One pooled engine per database URL per process."""
    settings = settings or get_settings()
    return _engine(settings.database_url, settings)


def get_autocommit_engine(settings: Settings | None = None) -> Engine:
    """The primary's engine for requests that only read: its connections are in
    autocommit from the start, so a checkout sets nothing and a return resets nothing
    (on the shared engine `bind_in_autocommit` set the isolation level at checkout, reset
    it at return, and the teardown rolled back: a sixth of a GET's CPU, py-spy). Its own
    pool, of the same size: a web process holds two (deployment/README.md)."""
    settings = settings or get_settings()
    return _engine(settings.database_url, settings, autocommit=True)


def get_read_engine(settings: Settings | None = None) -> Engine:
    """The replica's engine (DATABASE_READ_URL), or the primary's autocommit one when
    there is none: only reads, so in autocommit either way."""
    settings = settings or get_settings()
    return _engine(settings.database_read_url or settings.database_url, settings, autocommit=True)


def _engine(url: str, settings: Settings, *, autocommit: bool = False) -> Engine:
    with _lock:
        engine = _engines.get((url, autocommit))
        if engine is None:
            options: dict[str, Any] = (
                # Nothing to roll back on return: no statement ever opens a transaction.
                {"isolation_level": "AUTOCOMMIT", "pool_reset_on_return": None} if autocommit else {}
            )
            engine = create_engine(
                url,
                **options,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_pool_size,
                # No pool_pre_ping: it costs a round trip on every checkout, one in seven of
                # an accepted transfer's. `_check_out` pings only a connection that sat idle.
                pool_recycle=1800,
                connect_args={
                    "connect_timeout": 5,
                    "options": (
                        f"-c lock_timeout={settings.db_lock_timeout_ms} "
                        f"-c statement_timeout={settings.db_statement_timeout_ms} "
                        "-c timezone=UTC"
                    ),
                },
            )
            tracing.instrument_engine(engine)  # a span per statement, when tracing is on
            event.listen(engine, "checkout", _check_out)
            event.listen(engine, "checkin", _checked_in)
            _engines[(url, autocommit)] = engine
        return engine


# A connection back in use within this many seconds of its last use is not pinged: a
# PostgreSQL restart or a terminated backend takes longer than that to matter, and the
# next request after one is answered 503 (a retryable error) at worst, never wrongly.
PING_WHEN_IDLE_FOR_S = 1.0


def _checked_in(dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _check_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Hand out only a connection that works and is idle (DisconnectionError on checkout
    makes the pool throw it away and hand out a fresh one).

    - One still running (or in) a transaction was abandoned mid-query by an interrupted
      attempt.
    - One idle for PING_WHEN_IDLE_FOR_S or longer is pinged first (a restart or an idle
      timeout may have closed it); under load connections come back within
      milliseconds and cost no ping."""
    if dbapi_connection.info.transaction_status != pq.TransactionStatus.IDLE:
        raise sa_exc.DisconnectionError("connection was left busy by an interrupted attempt")
    checked_in_at = record.info.get("checked_in_at")
    if checked_in_at is None or time.monotonic() - checked_in_at < PING_WHEN_IDLE_FOR_S:
        return  # just connected, or in use a moment ago
    autocommit = dbapi_connection.autocommit
    try:
        dbapi_connection.autocommit = True  # the ping opens no transaction
        dbapi_connection.execute("SELECT 1")
        dbapi_connection.autocommit = autocommit
    except Exception as exc:  # noqa: BLE001 - any failure means: not this connection
        raise sa_exc.DisconnectionError(f"connection failed its ping: {type(exc).__name__}") from exc


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


# One sessionmaker per engine, made once: each sessionmaker() builds a new Session
# subclass, whose first transaction sets up SQLAlchemy's event dispatch for that class;
# made per request, that was a tenth of a GET /transactions/{id}'s CPU (py-spy).
# Keyed by engine, then autoflush (without a replica, reads share the primary's engine).
_SESSIONMAKERS: weakref.WeakKeyDictionary[Engine, dict[bool, sessionmaker[Session]]] = (
    weakref.WeakKeyDictionary()
)
_SESSIONMAKERS_LOCK = threading.Lock()


def _sessionmaker_of(engine: Engine, *, autoflush: bool) -> sessionmaker[Session]:
    with _SESSIONMAKERS_LOCK:
        makers = _SESSIONMAKERS.setdefault(engine, {})
        if autoflush not in makers:
            makers[autoflush] = sessionmaker(bind=engine, expire_on_commit=False, autoflush=autoflush)
        return makers[autoflush]


def session_factory(settings: Settings | None = None) -> sessionmaker[Session]:
    return _sessionmaker_of(get_engine(settings), autoflush=True)


def autocommit_session_factory(settings: Settings | None = None) -> sessionmaker[Session]:
    """Sessions whose every statement commits on its own (see get_autocommit_engine)."""
    return _sessionmaker_of(get_autocommit_engine(settings), autoflush=True)


def read_session_factory(settings: Settings | None = None) -> sessionmaker[Session]:
    """Sessions for reads that may lag (see Settings.database_read_url); never written."""
    return _sessionmaker_of(get_read_engine(settings), autoflush=False)


def bind_in_autocommit(session: Session) -> None:
    """Give a session that has not begun its connection in autocommit: each statement
    commits on its own, with no BEGIN or COMMIT round trip (the one place that says so;
    UnitOfWork.without_transaction says when that is safe)."""
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


class Sendable(Protocol):
    """What `enqueue` needs of an actor (a Dramatiq actor satisfies it)."""

    actor_name: str

    def send_with_options(self, *, args=(), kwargs=None, delay=None, **options) -> Any: ...


class UnitOfWork:
    def __init__(self, session: Session, *, autocommit: bool = False) -> None:
        """`autocommit`: the session is on the autocommit engine (`reading_unit` pairs
        the two): each statement commits on its own, so `rollback` has nothing to undo
        and skips the session's (which would expire every loaded object for nothing)."""
        self.session = session
        self.autocommit = autocommit
        self._after_commit: list[Callable[[], None]] = []

    def enqueue(self, actor: Sendable, *, delay_ms: int | None = None, **kwargs: Any) -> None:
        """Send `actor(**kwargs)` once this unit of work has committed."""
        from structlog.contextvars import get_contextvars

        request_id = get_contextvars().get("request_id")

        def send() -> None:
            options = {"request_id": request_id} if request_id else {}
            actor.send_with_options(kwargs=kwargs, delay=delay_ms, **options)

        self._after_commit.append(send)

    def without_transaction(self) -> bool:
        """Run this unit's statements outside an explicit transaction (autocommit): no
        BEGIN and COMMIT round trips. Only for a unit whose writes are ONE statement
        (atomic on its own) and that takes no lock it must hold to its end: the API's
        accept path of a transfer or a hold (db/transactions/recording.py). (Requests
        that only read go further: their whole unit is on the autocommit engine,
        `reading_unit`.) It lasts until the session's first commit or
        rollback.

        Must come first: False, and nothing changed, once the session has begun."""
        if self.session.in_transaction():
            return False
        bind_in_autocommit(self.session)
        return True

    def commit(self) -> None:
        with tracing.span("db.commit"):
            self.session.commit()
        pending, self._after_commit = self._after_commit, []
        for send in pending:
            try:
                send()
            except Exception as exc:  # noqa: BLE001 - Redis down must not undo a durable commit
                # The row is committed and `pending`: the sweeper re-enqueues it later.
                ENQUEUE_FAILURES.inc()
                log.warning("enqueue.failed", error=str(exc), error_type=type(exc).__name__)

    def rollback(self) -> None:
        self._after_commit.clear()
        if not self.autocommit:
            self.session.rollback()

    def abandon(self, exc: BaseException) -> None:
        """End the unit after `exc`. An interruption (a time limit, a shutdown: not an
        `Exception`) can strike mid-query, so its connection is invalidated, never rolled
        back and reused; so is one whose rollback fails (it is broken). The caller
        re-raises `exc` itself, never the rollback's error."""
        self._after_commit.clear()
        if isinstance(exc, Exception):
            try:
                self.session.rollback()
                return
            except Exception as rollback_error:  # noqa: BLE001 - the original error is what matters
                log.warning("rollback.failed", error_type=type(rollback_error).__name__)
        self.session.invalidate()

    def close(self) -> None:
        self._after_commit.clear()
        self.session.close()


def reading_unit(settings: Settings | None = None) -> UnitOfWork:
    """The unit of work of a request that only reads: on the autocommit engine, with
    nothing to roll back."""
    return UnitOfWork(autocommit_session_factory(settings)(), autocommit=True)


def database_now(session: Session) -> datetime:
    """The database's clock: what every row's `created_at` and `scheduled_for` are
    compared with. A worker host's clock may be off; deciding "due" by it releases early."""
    return session.execute(select(func.now())).scalar_one()


@contextmanager
def unit_of_work(settings: Settings | None = None) -> Iterator[UnitOfWork]:
    """Commit on a clean exit, roll back on an exception, always close."""
    uow = UnitOfWork(session_factory(settings)())
    try:
        yield uow
        uow.commit()
    except BaseException as exc:
        uow.abandon(exc)
        raise
    finally:
        uow.close()
