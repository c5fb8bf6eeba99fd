"""Waking long-polls when a transaction becomes final, without a thread per waiter.

PostgreSQL sends `NOTIFY ledgerq_transaction_final, '<id>,<id>,...'` at the commit of
whatever finalised the rows (the trigger of migration 0007). Each process holds ONE
listening connection (`FinalityHub`), read by one background thread, which sets the
`threading.Event` of every waiter on those ids. A waiter costs an entry in a dict and a
parked event; under the gevent web worker (api/gunicorn_conf.py) the thread and the
events are greenlets, so 200 waiters cost no OS thread and no pooled connection.

A notification can be missed only while the listener is (re)connecting; then
`is_listening` is False and callers fall back to re-reading the row on a short interval,
and every waiter is woken when the listener comes back so it re-reads at once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import make_url

from db.core.logs import get_logger

log = get_logger(__name__)

CHANNEL = "ledgerq_transaction_final"


def libpq_dsn(database_url: str) -> str:
    """The SQLAlchemy URL (postgresql+psycopg://...) as a libpq connection string."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class FinalityHub:
    def __init__(self, database_url: str) -> None:
        self._dsn = libpq_dsn(database_url)
        self._lock = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = {}
        self._listening = threading.Event()
        self._started = False
        self._stopping = False

    @property
    def is_listening(self) -> bool:
        return self._listening.is_set()

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._run, name="ledgerq-finality-listener", daemon=True).start()

    def wait_listening(self, timeout: float) -> bool:
        return self._listening.wait(timeout)

    def stop(self) -> None:
        self._stopping = True

    @contextmanager
    def watch(self, transaction_id: uuid.UUID) -> Iterator[threading.Event]:
        """An event set when `transaction_id` is finalised (or the listener reconnected).
        Register BEFORE re-reading the row: a commit between the read and the wait then
        still sets the event."""
        self.start()
        key = str(transaction_id)
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                events = self._waiters.get(key)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self._waiters[key]

    def waiting(self) -> int:
        with self._lock:
            return sum(len(events) for events in self._waiters.values())

    def _wake(self, keys: list[str] | None) -> None:
        with self._lock:
            if keys is None:
                events = [e for group in self._waiters.values() for e in group]
            else:
                events = [e for key in keys for e in self._waiters.get(key, ())]
        for event in events:
            event.set()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    self._wake(None)  # anything finalised while we were not listening
                    backoff = 0.5
                    log.info("transactions.finality_listening")
                    # timeout: look at _stopping now and then; the connection stays open.
                    while not self._stopping:
                        for note in conn.notifies(timeout=5.0):
                            self._wake(note.payload.split(","))
            except Exception as error:  # noqa: BLE001 - reconnect whatever broke
                if self._stopping:
                    break
                log.warning("transactions.finality_listener_down", error=str(error).splitlines()[0][:200])
            finally:
                self._listening.clear()
                self._wake(None)  # waiters switch to re-reading until we are back
            time.sleep(backoff)
            backoff = min(backoff * 2, 10.0)


_hubs: dict[str, FinalityHub] = {}
_hubs_lock = threading.Lock()


def hub_for(database_url: str) -> FinalityHub:
    """One hub per database per process, started on first use (after gunicorn forked)."""
    with _hubs_lock:
        hub = _hubs.get(database_url)
        if hub is None:
            hub = _hubs[database_url] = FinalityHub(database_url)
        return hub


def stop_all() -> None:
    """Stop every listener of this process (before its database is dropped)."""
    with _hubs_lock:
        for hub in _hubs.values():
            hub.stop()
        _hubs.clear()
