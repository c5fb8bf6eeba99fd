"""Idempotency for every request that creates money movement (transactions, batches):
the one `Submitted` result, the one replay rule, the one replay header.

A client's retry with the same `Idempotency-Key` (scoped to the user) and the same
request fingerprint replays the original record; the same key with a different
fingerprint is 422 `idempotency_key_reused`. The unique index on (created_by,
idempotency_key) of each table makes the first insert win however requests race; the
HTTP side (header parsing, the 202 and `Idempotent-Replayed`) is `@blp.idempotent` in
api/extensions/smorest.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from db.core.errors import IdempotencyKeyReused

REPLAY_HEADER = "Idempotent-Replayed"


# A row created idempotently (Transaction, Batch): it has `id` and `request_hash`, the
# fingerprint of its request. (Not a Protocol: mypy does not match SQLAlchemy's
# `Mapped[...]` columns against protocol members.)
R = TypeVar("R")


@dataclass(frozen=True)
class Submitted(Generic[R]):
    """What a submission recorded: the new row, or on a replay the original one."""

    record: R
    replayed: bool


def created(record: R) -> Submitted[R]:
    return Submitted(record, replayed=False)


def replay(existing: R, fingerprint: str, *, kind: str, differs: str) -> Submitted[R]:
    """The original `existing` when `fingerprint` matches the one it was created with;
    otherwise 422 naming it (`{kind}_id`). `differs` says what was different."""
    row: Any = existing
    if row.request_hash != fingerprint:
        raise IdempotencyKeyReused(
            f"This Idempotency-Key was already used with a different {differs}.",
            {f"{kind}_id": str(row.id)},
        )
    return Submitted(existing, replayed=True)
