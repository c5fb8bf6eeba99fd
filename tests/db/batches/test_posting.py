"""The batch engine (db.batches.posting.apply_chunk), called directly against real
PostgreSQL: an independent chunk applies its window of lines in file order and moves the
cursor; a stale duplicate is a no-op and a concurrent one steps aside (`busy`) under the
batch's advisory lock; an atomic batch applies every line at once, or on the first
failing line rolls every entry back and ends `failed`."""

from __future__ import annotations

import uuid

import pytest

from db.batches import posting
from db.batches import repository as batches_repo
from db.batches.posting import ChunkOutcome, apply_chunk
from db.session import session_factory, unit_of_work
from tests.fixtures.batches import batch_row, csv_bytes, line_statuses, upload
from tests.fixtures.ledger import audit_log, balance, entry_count, sql

# The file's header is line 1: data lines are 2, 3, ... and the cursor starts at 0.
FIRST_LINE = 2


def chunk(batch_id, start_line: int, chunk_size: int = 100) -> ChunkOutcome:
    """One delivery of a chunk, in its own committed unit of work (as the actor runs it)."""
    with unit_of_work() as uow:
        return apply_chunk(uow.session, uuid.UUID(str(batch_id)), start_line, chunk_size=chunk_size)


@pytest.fixture
def parties(make):
    """finance uploads; alice holds 100.00, bob and carol nothing."""
    finance, alice, bob, carol = make.user("finance"), make.user(), make.user(), make.user()
    return finance, make.account(alice, balance="100.00"), make.account(bob), make.account(carol)


@pytest.fixture
def submit(client, parties):
    """Upload lines as finance with no worker running: the batch waits, `processing`, for
    its first chunk."""
    finance = parties[0]

    def submit_lines(*lines: str, **form) -> str:
        response = upload(client, finance, csv_bytes(*lines), **form)
        assert response.status_code == 202, response.json
        assert response.json["status"] == "processing", response.json
        return response.json["id"]

    return submit_lines


def test_an_independent_chunk_applies_its_window_and_moves_the_cursor(parties, submit):
    _, a, b, _ = parties
    batch_id = submit(*[f"{a},{b},1.00,USD,i-{n}" for n in range(5)])  # lines 2..6
    entries_before = entry_count()

    first = chunk(batch_id, 0, chunk_size=4)  # lines 0..3: the data lines 2 and 3

    assert first == ChunkOutcome("applied", completed=2, next_line=4, batch_status="processing")
    assert (balance(a), balance(b)) == ("98.00", "2.00")
    assert entry_count() == entries_before + 4
    assert line_statuses(batch_id) == ["completed", "completed", "pending", "pending", "pending"]
    row = batch_row(batch_id)
    assert (row.status, row.next_line, row.completed_count, row.pending_count) == ("processing", 4, 2, 3)
    assert audit_log(batch_id)[-1].action == "batch.chunk_applied"
    assert audit_log(batch_id)[-1].data == {
        "from_line": 0,
        "to_line": 3,
        "completed": 2,
        "failed": 0,
        "skipped": 0,
    }

    last = chunk(batch_id, 4, chunk_size=4)  # lines 4..7: the rest, up to last_line 6

    assert last == ChunkOutcome("applied", completed=3, next_line=None, batch_status="completed")
    assert (balance(a), balance(b)) == ("95.00", "5.00")
    row = batch_row(batch_id)
    assert (row.status, row.completed_count) == ("completed", 5)
    assert row.completed_at is not None


def test_lines_are_decided_in_file_order_against_the_moving_balances(parties, submit):
    """Line 3 spends what line 2 brought bob; line 4 asks alice for more than is left."""
    _, a, b, c = parties
    batch_id = submit(f"{a},{b},60.00,USD,o-1", f"{b},{c},60.00,USD,o-2", f"{a},{c},60.00,USD,o-3")

    outcome = chunk(batch_id, 0)

    assert (outcome.status, outcome.completed, outcome.failed) == ("applied", 2, 1)
    assert outcome.batch_status == "completed_with_errors"
    assert line_statuses(batch_id) == ["completed", "completed", "failed"]
    failed = sql("SELECT failure_code FROM transactions WHERE batch_id = :id AND batch_line = 4", id=batch_id)
    assert failed == [("insufficient_funds",)]
    assert (balance(a), balance(b), balance(c)) == ("40.00", "0.00", "60.00")
    assert batch_row(batch_id).status == "completed_with_errors"


def test_a_line_that_would_overflow_a_balance_fails_alone_and_the_chunk_goes_on(parties, submit):
    """The chunk runs the same engine as a transfer: a balance leaving BIGINT range is the
    line's `amount_out_of_range`, decided, and the lines after it still apply."""
    from db.ledger.posting.rules import BIGINT_MAX

    _, a, b, c = parties
    batch_id = submit(f"{a},{b},1.00,USD,x-1", f"{a},{c},1.00,USD,x-2")
    sql("UPDATE balances SET balance_minor = :v WHERE account_id = :id", v=BIGINT_MAX - 99, id=str(b))

    outcome = chunk(batch_id, 0)

    assert (outcome.completed, outcome.failed) == (1, 1)
    assert line_statuses(batch_id) == ["failed", "completed"]
    failed = sql("SELECT failure_code FROM transactions WHERE batch_id = :id AND batch_line = 2", id=batch_id)
    assert failed == [("amount_out_of_range",)]
    assert (balance(a), balance(c)) == ("99.00", "1.00")


def test_a_batch_whose_every_line_fails_is_failed_nothing_applied(parties, submit):
    _, a, b, _ = parties
    batch_id = submit(f"{a},{b},100.01,USD,n-1", f"{a},{b},200.00,USD,n-2")

    outcome = chunk(batch_id, 0)

    assert (outcome.completed, outcome.failed, outcome.batch_status) == (0, 2, "failed")
    row = batch_row(batch_id)
    assert (row.status, row.failure_code) == ("failed", "nothing_applied")
    assert balance(a) == "100.00"


def test_a_stale_duplicate_of_an_earlier_chunk_is_a_no_op(parties, submit):
    _, a, b, _ = parties
    batch_id = submit(*[f"{a},{b},1.00,USD,d-{n}" for n in range(4)])
    assert chunk(batch_id, 0, chunk_size=4).next_line == 4
    entries = entry_count()

    assert chunk(batch_id, 0, chunk_size=4) == ChunkOutcome("noop")  # the same message again
    assert chunk(batch_id, 8, chunk_size=4) == ChunkOutcome("noop")  # one from a future cursor

    assert entry_count() == entries and balance(b) == "2.00"
    assert batch_row(batch_id).next_line == 4
    assert chunk(batch_id, 4, chunk_size=4).batch_status == "completed"
    assert chunk(batch_id, 4, chunk_size=4) == ChunkOutcome("noop")  # a finished batch
    assert balance(b) == "4.00"


def test_lines_no_longer_pending_are_skipped(parties, submit):
    """Each line's transaction row is locked and decided only while pending: a line
    cancelled on its own (or decided by an earlier delivery) is left as it is."""
    _, a, b, _ = parties
    batch_id = submit(*[f"{a},{b},1.00,USD,c-{n}" for n in range(3)])
    sql("UPDATE transactions SET status = 'cancelled' WHERE batch_id = :id AND batch_line = 3", id=batch_id)

    outcome = chunk(batch_id, 0)

    assert (outcome.completed, outcome.skipped) == (2, 1)
    row = batch_row(batch_id)
    assert (row.completed_count, row.cancelled_count, row.pending_count) == (2, 1, 0)
    assert row.status == "completed_with_errors"
    assert balance(b) == "2.00"


def test_a_delivery_finding_the_advisory_lock_taken_steps_aside(parties, submit):
    _, a, b, _ = parties
    batch_id = submit(f"{a},{b},1.00,USD,l-1")

    with session_factory()() as holder, holder.begin():
        assert batches_repo.try_lock(holder, uuid.UUID(batch_id))  # another delivery is applying
        assert chunk(batch_id, 0) == ChunkOutcome("busy")
        assert line_statuses(batch_id) == ["pending"]
        assert batch_row(batch_id).next_line == 0

    assert chunk(batch_id, 0).batch_status == "completed"  # the lock ends with its transaction
    assert balance(b) == "1.00"


def test_an_atomic_batch_applies_every_line_at_once(parties, submit):
    _, a, b, c = parties
    batch_id = submit(
        f"{a},{b},30.00,USD,a-1", f"{b},{c},10.00,USD,a-2", f"{a},{c},5.00,USD,a-3", mode="atomic"
    )

    outcome = chunk(batch_id, 0, chunk_size=1)  # an atomic batch is one step, whatever the size

    assert outcome == ChunkOutcome("applied", completed=3, batch_status="completed")
    assert (balance(a), balance(b), balance(c)) == ("65.00", "20.00", "15.00")
    row = batch_row(batch_id)
    assert (row.status, row.completed_count, row.next_line) == ("completed", 3, row.last_line + 1)
    assert audit_log(batch_id)[-1].action == "batch.applied_atomically"


def test_an_atomic_batch_failing_late_rolls_back_what_it_already_wrote(parties, submit, monkeypatch):
    """Blocks of two lines: lines 2-3 are written before line 5 fails, and the savepoint
    takes them back; the failing line is `failed`, every other line `cancelled`."""
    monkeypatch.setattr(posting, "BLOCK", 2)
    _, a, b, c = parties
    batch_id = submit(
        f"{a},{b},40.00,USD,r-1",
        f"{a},{b},40.00,USD,r-2",
        f"{b},{c},80.00,USD,r-3",
        f"{a},{c},40.00,USD,r-4",  # line 5: alice has 20.00 left
        f"{b},{c},1.00,USD,r-5",
        mode="atomic",
    )
    entries_before = entry_count()

    outcome = chunk(batch_id, 0)

    assert outcome == ChunkOutcome("applied", failed=1, batch_status="failed")
    assert entry_count() == entries_before
    assert (balance(a), balance(b), balance(c)) == ("100.00", "0.00", "0.00")
    assert line_statuses(batch_id) == ["cancelled", "cancelled", "cancelled", "failed", "cancelled"]
    row = batch_row(batch_id)
    assert (row.status, row.failure_code) == ("failed", "insufficient_funds")
    assert "line 5" in row.failure_message
    assert (row.completed_count, row.failed_count, row.cancelled_count) == (0, 1, 4)
    assert audit_log(batch_id)[-1].data == {"line": 5, "failure_code": "insufficient_funds", "cancelled": 4}
    assert chunk(batch_id, 0) == ChunkOutcome("noop")  # failed is final


def test_an_atomic_batch_with_a_line_no_longer_pending_moves_nothing(parties, submit):
    _, a, b, _ = parties
    batch_id = submit(f"{a},{b},1.00,USD,p-1", f"{a},{b},1.00,USD,p-2", mode="atomic")
    sql("UPDATE transactions SET status = 'cancelled' WHERE batch_id = :id AND batch_line = 3", id=batch_id)

    outcome = chunk(batch_id, 0)

    assert outcome == ChunkOutcome("applied", failed=0, batch_status="failed")
    assert line_statuses(batch_id) == ["cancelled", "cancelled"]
    row = batch_row(batch_id)
    assert (row.status, row.failure_code) == ("failed", "line_not_pending")
    assert balance(a) == "100.00"
