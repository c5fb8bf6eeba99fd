"""The batch lifecycle table (db/batches/states.py): the moves of shared/API.md are
allowed, anything else is refused instead of overwriting the status."""

from __future__ import annotations

import uuid

import pytest

from db.batches import states
from db.models import Batch


def _batch(status: str, **values) -> Batch:
    return Batch(id=uuid.uuid4(), status=status, **values)


@pytest.mark.parametrize("status", ["received", "validating"])
def test_validated_batch_starts_or_waits_for_its_time(status):
    now = _batch(status, scheduled_for=None)
    later = _batch(status, scheduled_for=object())
    states.validated(now)
    states.validated(later)
    assert (now.status, later.status) == ("processing", "scheduled")
    assert now.started_at is not None and later.started_at is None


def test_failing_records_the_reason_and_the_end():
    batch = _batch("validating")
    states.fail(batch, "no_lines", "the file has no lines")
    assert (batch.status, batch.failure_code, batch.failure_message) == (
        "failed",
        "no_lines",
        "the file has no lines",
    )
    assert batch.completed_at is not None


@pytest.mark.parametrize(
    ("status", "move"),
    [
        ("processing", states.cancel),
        ("completed", states.cancel),
        ("cancelled", states.release),
        ("received", states.release),
        ("failed", lambda b: states.fail(b, "x", "y")),
        ("completed_with_errors", lambda b: states.dead_lettered(b, 1, "boom")),
        ("scheduled", lambda b: states.fail(b, "x", "y")),
        ("validating", lambda b: states.dead_lettered(b, 1, "boom")),
    ],
)
def test_a_move_the_lifecycle_forbids_is_refused_and_changes_nothing(status, move):
    batch = _batch(status)
    with pytest.raises(states.IllegalTransition):
        move(batch)
    assert batch.status == status


def test_every_status_of_the_schema_is_in_the_lifecycle():
    from db.models import BATCH_STATUSES

    known = set(states.TRANSITIONS) | set(states.FINAL)
    assert known == set(BATCH_STATUSES)
    for targets in states.TRANSITIONS.values():
        assert set(targets) <= known
