"""Every writer locks a batch's row before its lines: a cancel racing the scheduled
release waits for it (then 409, or cancels first), and the two never deadlock."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import event

from db.batches import service as batches_service
from db.core.errors import Conflict
from db.session import get_engine, unit_of_work
from tests.fixtures.batches import batch_row, csv_bytes, line_statuses, upload


def test_cancel_racing_the_scheduled_release_never_deadlocks(client, make):
    finance, alice = make.user("finance"), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    due = datetime.now(UTC) + timedelta(seconds=1)
    batch_id = uuid.UUID(
        upload(client, finance, csv_bytes(f"{a},{b},1.00,USD,r1"), scheduled_for=due.isoformat()).json["id"]
    )
    cancel_locked_lines = threading.Event()
    outcome: dict[str, object] = {}

    def interleave(conn, cursor, statement, parameters, context, executemany):
        # The release holds the batch row (claimed) and is about to update the lines: let
        # the cancel run as far as it gets first (with lines-first it locks the lines).
        if threading.current_thread().name == "release" and statement.startswith("UPDATE transactions"):
            cancel_locked_lines.wait(timeout=2.0)

    def mark(conn, cursor, statement, parameters, context, executemany):
        if threading.current_thread().name == "cancel" and statement.startswith("UPDATE transactions"):
            cancel_locked_lines.set()

    def run(name, work):
        try:
            with unit_of_work() as uow:
                outcome[name] = work(uow.session)
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcome[name] = exc

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", interleave)
    event.listen(engine, "after_cursor_execute", mark)
    try:
        release = threading.Thread(
            name="release",
            target=run,
            args=(
                "release",
                lambda s: batches_service.release_due(s, now=due + timedelta(seconds=1), limit=10),
            ),
        )
        release.start()
        threading.Event().wait(0.3)  # the release has claimed the batch row
        cancel = threading.Thread(
            name="cancel",
            target=run,
            args=("cancel", lambda s: batches_service.cancel(s, finance.principal, batch_id)),
        )
        cancel.start()
        release.join(15)
        cancel.join(15)
    finally:
        event.remove(engine, "before_cursor_execute", interleave)
        event.remove(engine, "after_cursor_execute", mark)

    assert isinstance(outcome["release"], list) and len(outcome["release"]) == 1, outcome
    assert isinstance(outcome["cancel"], Conflict), outcome  # waited for the release, then refused
    assert batch_row(batch_id).status == "processing"
    assert line_statuses(batch_id) == ["pending"]
