"""A per-process cache of database facts that a NOTIFY invalidates at the commit of the
change: the home of the rules that make such a cache safe to trust.

- An entry lives at most `ttl_s`: the bound for the one case nothing else covers, a
  listening connection that died without the process noticing (TCP keepalives notice
  within ~25 s).
- The cache is used only while the process's listener is connected; it is emptied on
  every (re)connect and disconnect (db/ops/notifications.py), since notifications sent
  meanwhile are lost.
- A read that raced with a notification is not stored (generation check), so a stale
  value can never be put back after its invalidation.
- In the process that commits a change, `forget` drops the entry synchronously at the
  commit (the callers' `after_commit` hooks), before the notification comes back.

Users: db/auth/auth_states.py (the per-request user check) and
db/auth/revoked_families.py (is this login session revoked?).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session

from db.ops.notifications import Listener

K = TypeVar("K")
V = TypeVar("V")


class NotifiedCache(Generic[K, V]):
    def __init__(
        self,
        listener: Listener,
        channel: str,
        *,
        load: Callable[[Session, K], V],
        key_of: Callable[[str], K],
        ttl_s: float,
        max_entries: int = 50_000,
        keep: Callable[[V], bool] = lambda value: True,
    ) -> None:
        self.listener = listener
        self._load = load
        self._key_of = key_of
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._keep = keep
        self._lock = threading.Lock()
        self._cache: dict[K, tuple[float, V]] = {}
        self._generation = 0
        listener.subscribe(channel, self._notified)

    def _notified(self, payload: list[str] | None) -> None:
        self.forget(None if payload is None else [self._key_of(item) for item in payload])

    def forget(self, keys: Iterable[K] | None) -> None:
        """Drop `keys` (None: everything)."""
        with self._lock:
            self._generation += 1
            if keys is None:
                self._cache.clear()
            else:
                for key in keys:
                    self._cache.pop(key, None)

    def get(self, session: Session, key: K) -> V:
        self.listener.start()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            generation = self._generation
        if hit and hit[0] > now and self.listener.is_listening:
            return hit[1]
        value = self._load(session, key)
        with self._lock:
            if self._keep(value) and self.listener.is_listening and generation == self._generation:
                if len(self._cache) >= self._max_entries:
                    self._cache.clear()
                self._cache[key] = (now + self._ttl_s, value)
        return value


def forget_at_commit(info_key: str, caches: Mapping[str, NotifiedCache]) -> None:
    """In the committing process, drop the keys a transaction collected under
    `session.info[info_key]` from every cache of `caches` at its commit (before the
    NOTIFY comes back), and forget them on rollback."""

    @event.listens_for(Session, "after_commit")
    def _forget(session: Session) -> None:
        changed = session.info.pop(info_key, None)
        if changed:
            for cache in list(caches.values()):
                cache.forget(changed)

    @event.listens_for(Session, "after_rollback")
    def _nothing_changed(session: Session) -> None:
        session.info.pop(info_key, None)
