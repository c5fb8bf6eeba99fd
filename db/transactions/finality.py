"""Waking long-polls when a transaction becomes final, without a thread per waiter.

PostgreSQL sends `NOTIFY ledgerq_transaction_final, '<id>,<id>,...'` at the commit of
whatever finalised the rows (the trigger of migration 0007). The process's one
`Listener` (db/ops/notifications.py) hands the ids to the `FinalityHub`, which sets the
`threading.Event` of every waiter on those ids. A waiter costs an entry in a dict and a
parked event; under the gevent web worker (api/gunicorn_conf.py) the events are
greenlet-friendly, so 200 waiters cost no OS thread and no pooled connection.

A notification can be missed only while the listener is (re)connecting; then
`is_listening` is False and callers fall back to re-reading the row on a short interval,
and every waiter is woken when the listener comes back so it re-reads at once.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from db.ops.notifications import TRANSACTION_FINAL, Listener, attached


class FinalityHub:
    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self._lock = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = {}
        listener.subscribe(TRANSACTION_FINAL, self._wake)

    @property
    def is_listening(self) -> bool:
        return self.listener.is_listening

    @contextmanager
    def watch(self, transaction_id: uuid.UUID) -> Iterator[threading.Event]:
        """An event set when `transaction_id` is finalised (or the listener reconnected).
        Register BEFORE re-reading the row: a commit between the read and the wait then
        still sets the event."""
        self.listener.start()
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


_hubs: dict[str, FinalityHub] = {}


def hub_for(database_url: str) -> FinalityHub:
    return attached(_hubs, database_url, FinalityHub)
