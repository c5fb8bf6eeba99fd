"""One LISTEN connection per process for every PostgreSQL notification we use.

Triggers send the notifications at the commit of the change, whatever code path made it
(migrations 0008, 0010 and 0018):
- `ledgerq_transaction_final`: ids of transactions that reached a final status (wakes
  long-polls, db/transactions/finality.py);
- `ledgerq_user_changed`: ids of users whose role, activity or token version changed
  (drops their cached auth state, db/auth/auth_states.py);
- `ledgerq_family_revoked`: ids of token families (login sessions) just revoked
  (db/auth/revoked_families.py).

A handler gets the list of ids, or None for "anything may have changed": on every
(re)connect and disconnect, since notifications sent meanwhile are lost. While not
listening (`is_listening` False), users of the listener must not trust what they cached.
The reading thread is a greenlet under the gevent web worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from sqlalchemy.engine import make_url

from db.core.logs import get_logger

log = get_logger(__name__)

TRANSACTION_FINAL = "ledgerq_transaction_final"
USER_CHANGED = "ledgerq_user_changed"
FAMILY_REVOKED = "ledgerq_family_revoked"
CHANNELS = (TRANSACTION_FINAL, USER_CHANGED, FAMILY_REVOKED)

T = TypeVar("T")
Handler = Callable[[list[str] | None], None]


def libpq_dsn(database_url: str) -> str:
    """The SQLAlchemy URL (postgresql+psycopg://...) as a libpq connection string."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    def __init__(self, database_url: str) -> None:
        self._dsn = libpq_dsn(database_url)
        self._lock = threading.Lock()
        self._handlers: dict[str, list[Handler]] = {channel: [] for channel in CHANNELS}
        self._listening = threading.Event()
        self._started = False
        self._stopping = False

    @property
    def is_listening(self) -> bool:
        return self._listening.is_set()

    def subscribe(self, channel: str, handler: Handler) -> None:
        with self._lock:
            self._handlers[channel].append(handler)

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._run, name="ledgerq-listener", daemon=True).start()

    def wait_listening(self, timeout: float) -> bool:
        return self._listening.wait(timeout)

    def stop(self) -> None:
        self._stopping = True

    def _dispatch(self, channel: str | None, ids: list[str] | None) -> None:
        with self._lock:
            handlers = [h for c, hs in self._handlers.items() if channel in (None, c) for h in hs]
        for handler in handlers:
            handler(ids)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            try:
                # Keepalives: a connection that died silently is noticed within ~25 s.
                with psycopg.connect(
                    self._dsn,
                    autocommit=True,
                    connect_timeout=5,
                    keepalives=1,
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=3,
                ) as conn:
                    for channel in CHANNELS:
                        conn.execute(f"LISTEN {channel}")
                    self._listening.set()
                    self._dispatch(None, None)  # whatever changed while we were not listening
                    backoff = 0.5
                    log.info("notifications.listening")
                    while not self._stopping:
                        # timeout: look at _stopping now and then; the connection stays open.
                        for note in conn.notifies(timeout=5.0):
                            self._dispatch(note.channel, note.payload.split(","))
            except Exception as error:  # noqa: BLE001 - reconnect whatever broke
                if self._stopping:
                    break
                log.warning("notifications.listener_down", error=str(error).splitlines()[0][:200])
            finally:
                self._listening.clear()
                self._dispatch(None, None)  # caches stop trusting themselves until we are back
            time.sleep(backoff)
            backoff = min(backoff * 2, 10.0)


_listeners: dict[str, Listener] = {}
_listeners_lock = threading.Lock()


def listener_for(database_url: str) -> Listener:
    """One listener per database per process, started on first use (after gunicorn forked)."""
    with _listeners_lock:
        listener = _listeners.get(database_url)
        if listener is None:
            listener = _listeners[database_url] = Listener(database_url)
        return listener


def attached(registry: dict[str, T], database_url: str, factory: Callable[[Listener], T]) -> T:
    """The one `factory(listener)` of this process for `database_url` (a hub, a cache),
    rebuilt if the listener was replaced (after `stop_all`)."""
    with _listeners_lock:
        found = registry.get(database_url)
    listener = listener_for(database_url)
    if found is None or getattr(found, "listener", None) is not listener:
        with _listeners_lock:
            found = registry[database_url] = factory(listener)
    return found


def stop_all() -> None:
    """Stop every listener of this process (before its database is dropped)."""
    with _listeners_lock:
        for listener in _listeners.values():
            listener.stop()
        _listeners.clear()
