"""The per-request user check (active? token version? role?) without a database round
trip on most requests, and without giving up "a deactivated user's or changed password's
tokens stop working at once".

Each process caches the few columns the check needs, per user, for at most `TTL_S`.
Every UPDATE of a user's role, is_active, token_version or username NOTIFYs
`ledgerq_user_changed` at its commit (migration 0010's trigger), and every process drops
that user's entry on receipt, typically a few ms after the commit; the process that made
the change drops it at the commit itself. The rules that make this safe (trusted only
while listening, no stale value put back, the TTL's one case) live in
db/ops/notified_cache.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from db.models import User
from db.ops.notifications import USER_CHANGED, Listener, attached
from db.ops.notified_cache import NotifiedCache, forget_at_commit

TTL_S = 10.0


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


class AuthStates(NotifiedCache[uuid.UUID, AuthState | None]):
    """Unknown users are not cached (their tokens are refused either way)."""

    def __init__(self, listener: Listener) -> None:
        super().__init__(
            listener,
            USER_CHANGED,
            load=load,
            key_of=uuid.UUID,
            ttl_s=TTL_S,
            keep=lambda state: state is not None,
        )


_states: dict[str, AuthStates] = {}
# session.info key: users this transaction changed (forgotten at its commit).
_USERS_CHANGED = "ledgerq_users_changed"


def states_for(database_url: str) -> AuthStates:
    return attached(_states, database_url, AuthStates)


@event.listens_for(Session, "after_flush")
def _note_user_changes(session: Session, _flush_context) -> None:
    # Still the pre-flush view here: `dirty` lists the users this flush updated.
    changed = {obj.id for obj in session.dirty if isinstance(obj, User)}
    if changed:
        session.info.setdefault(_USERS_CHANGED, set()).update(changed)


forget_at_commit(_USERS_CHANGED, _states)
