"""db/idempotency.py: the one replay rule shared by transactions and batches (the HTTP
side is covered end to end in tests/api/transactions/test_idempotency.py and
tests/api/batches/test_batches.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from db import idempotency
from db.core.errors import IdempotencyKeyReused


@dataclass
class Row:
    id: uuid.UUID
    request_hash: str | None


def test_a_new_record_is_not_a_replay():
    row = Row(uuid.uuid4(), "abc")
    submitted = idempotency.created(row)
    assert submitted.record is row
    assert submitted.replayed is False


def test_the_same_fingerprint_replays_the_original():
    row = Row(uuid.uuid4(), "abc")
    submitted = idempotency.replay(row, "abc", kind="transaction", differs="request body")
    assert submitted.record is row
    assert submitted.replayed is True


@pytest.mark.parametrize(
    ("kind", "differs", "message"),
    [
        (
            "transaction",
            "request body",
            "This Idempotency-Key was already used with a different request body.",
        ),
        ("batch", "batch", "This Idempotency-Key was already used with a different batch."),
    ],
)
def test_another_fingerprint_is_refused_naming_the_original(kind, differs, message):
    row = Row(uuid.uuid4(), "abc")
    with pytest.raises(IdempotencyKeyReused) as refused:
        idempotency.replay(row, "something else", kind=kind, differs=differs)
    assert refused.value.message == message
    assert refused.value.details == {f"{kind}_id": str(row.id)}
    assert refused.value.code == "idempotency_key_reused"
