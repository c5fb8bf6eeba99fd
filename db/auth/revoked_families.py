"""Is this login session (token family, an access token's `fam` claim) revoked? Asked
on every authenticated request, answered from memory on most.

A revocation (logout, refresh-token reuse, `revoke_all`) marks the family's
`refresh_tokens` rows; migration 0018's trigger NOTIFYs `ledgerq_family_revoked` with
the family id at that commit, and every process drops its entry on receipt (the
committing process at the commit itself). So a revoked session's access tokens stop
working within the notification's delivery, a few ms; the safety rules and the one
case the TTL bounds are those of db/ops/notified_cache.py.
"""

from __future__ import annotations

import uuid

from db.auth import token_repository
from db.ops.notifications import FAMILY_REVOKED, Listener, attached
from db.ops.notified_cache import NotifiedCache, forget_at_commit

TTL_S = 10.0


class RevokedFamilies(NotifiedCache[uuid.UUID, bool]):
    def __init__(self, listener: Listener) -> None:
        super().__init__(
            listener, FAMILY_REVOKED, load=token_repository.family_revoked, key_of=uuid.UUID, ttl_s=TTL_S
        )


_caches: dict[str, RevokedFamilies] = {}


def revoked_families_for(database_url: str) -> RevokedFamilies:
    return attached(_caches, database_url, RevokedFamilies)


forget_at_commit(token_repository.REVOKED_FAMILIES, _caches)
