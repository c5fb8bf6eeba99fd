"""The per-request user check (active? token version? role?) without a database round
trip on most requests, and without giving up "a deactivated user's or changed password's
tokens stop working at once".

Each process caches the few columns the check needs, per user, for at most `TTL_S`.
Every UPDATE of a user's role, is_active, token_version or username NOTIFYs
`ledgerq_user_changed` at its commit (migration 0009's trigger); the process's listener
(db/ops/notifications.py) drops that user's entry on receipt, typically a few ms after
the commit. The cache is trusted only while the listener is connected: while it is not,
every request reads the row, and the cache is emptied on every (re)connect. In the
process that commits the change the entry is dropped synchronously, at the commit. A read that
raced with a notification is not cached (generation check), so a stale state can never
be put back after its invalidation. The TTL bounds the one remaining case: a listening
connection that died without the process noticing (TCP keepalives detect it in ~25 s).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from db.models import User
from db.ops.notifications import USER_CHANGED, Listener, attached

TTL_S = 10.0
MAX_ENTRIES = 50_000


@dataclass(frozen=True)
class AuthState:
    id: uuid.UUID
    role: str
    username: str
    is_active: bool
    token_version: int


def load(session: Session, user_id: uuid.UUID) -> AuthState | None:
    row = session.execute(
        select(User.id, User.role, User.username, User.is_active, User.token_version).where(
            User.id == user_id
        )
    ).first()
    return AuthState(*row) if row else None


class AuthStates:
    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self._lock = threading.Lock()
        self._cache: dict[uuid.UUID, tuple[float, AuthState]] = {}
        self._generation = 0
        listener.subscribe(USER_CHANGED, self._changed)

    def _changed(self, ids: list[str] | None) -> None:
        with self._lock:
            self._generation += 1
            if ids is None:
                self._cache.clear()
            else:
                for user_id in ids:
                    self._cache.pop(uuid.UUID(user_id), None)

    def get(self, session: Session, user_id: uuid.UUID) -> AuthState | None:
        self.listener.start()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(user_id)
            generation = self._generation
        if hit and hit[0] > now and self.listener.is_listening:
            return hit[1]
        state = load(session, user_id)
        with self._lock:
            if state and self.listener.is_listening and generation == self._generation:
                if len(self._cache) >= MAX_ENTRIES:
                    self._cache.clear()
                self._cache[user_id] = (now + TTL_S, state)
        return state


_states: dict[str, AuthStates] = {}


def states_for(database_url: str) -> AuthStates:
    return attached(_states, database_url, AuthStates)


@event.listens_for(Session, "after_flush")
def _note_user_changes(session: Session, _flush_context) -> None:
    # Still the pre-flush view here: `dirty` lists the users this flush updated.
    changed = {obj.id for obj in session.dirty if isinstance(obj, User)}
    if changed:
        session.info.setdefault("ledgerq_users_changed", set()).update(changed)


@event.listens_for(Session, "after_commit")
def _forget_changed_users(session: Session) -> None:
    changed = session.info.pop("ledgerq_users_changed", None)
    if changed:
        for cache in list(_states.values()):
            cache._changed([str(user_id) for user_id in changed])


@event.listens_for(Session, "after_rollback")
def _nothing_changed(session: Session) -> None:
    session.info.pop("ledgerq_users_changed", None)
