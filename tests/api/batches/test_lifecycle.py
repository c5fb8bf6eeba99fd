"""Scheduled batches (held until due, released by the scheduler tick) and cancel."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from db.session import unit_of_work
from tests.fixtures.batches import assert_counts_add_up, csv_bytes, items, line_statuses, upload, wait_batch
from tests.fixtures.ledger import balance
from workers import batches as batch_actors
from workers import maintenance


def test_scheduled_batch_waits_until_due_then_runs(client, make, worker):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a = make.account(alice, balance="10.00")
    b = make.account(bob)
    due = datetime.now(UTC) + timedelta(seconds=2)
    response = upload(
        client,
        finance,
        csv_bytes(f"{a},{b},3.00,USD,s-1", f"{a},{b},x,USD,s-2"),
        scheduled_for=due.isoformat(),
    )
    assert response.status_code == 202
    batch = response.json
    assert batch["status"] == "scheduled"
    assert batch["counts"]["pending"] == 1 and batch["counts"]["rejected"] == 1
    assert_counts_add_up(batch)
    assert line_statuses(batch["id"]) == ["scheduled"]

    # Not due yet: neither the batch tick nor the single-transfer release touches it.
    assert batch_actors.release_due_batches() == 0
    assert maintenance.release_due_scheduled() == 0
    time.sleep(0.5)
    assert balance(b) == "0.00"
    assert client.get(f"/api/v1/batches/{batch['id']}", headers=finance.headers).json["status"] == "scheduled"

    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.1)
    assert maintenance.release_due_scheduled() == 0  # batch lines are released with their batch
    assert batch_actors.release_due_batches() == 1
    assert batch_actors.release_due_batches() == 0  # released once
    done = wait_batch(client, finance, batch["id"])
    assert done["status"] == "completed_with_errors"
    assert done["counts"]["completed"] == 1
    assert balance(b) == "3.00"


def test_scheduled_batch_can_be_cancelled_before_it_runs(client, make, worker):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a = make.account(alice, balance="10.00")
    b = make.account(bob)
    due = datetime.now(UTC) + timedelta(seconds=1)
    batch = upload(
        client,
        finance,
        csv_bytes(f"{a},{b},3.00,USD,c-1", f"{a},{b},4.00,USD,c-2"),
        scheduled_for=due.isoformat(),
    ).json
    cancelled = client.post(f"/api/v1/batches/{batch['id']}/cancel", headers=finance.headers)
    assert cancelled.status_code == 200, cancelled.json
    body = cancelled.json
    assert body["status"] == "cancelled"
    assert body["counts"]["cancelled"] == 2 and body["counts"]["pending"] == 0
    assert_counts_add_up(body)
    assert line_statuses(batch["id"]) == ["cancelled", "cancelled"]

    time.sleep(1.2)
    assert batch_actors.release_due_batches() == 0
    assert balance(b) == "0.00"
    again = client.post(f"/api/v1/batches/{batch['id']}/cancel", headers=finance.headers)
    assert again.status_code == 409
    assert again.json["error"]["code"] == "conflict"
    assert [item["status"] for item in items(client, finance, batch["id"])] == ["cancelled", "cancelled"]


def test_cancel_is_refused_once_processing_started(client, make, worker):
    finance, alice = make.user("finance"), make.user()
    a = make.account(alice)
    batch = upload(client, finance, csv_bytes(f",{a},1.00,USD,p-1")).json
    assert batch["status"] == "processing"
    response = client.post(f"/api/v1/batches/{batch['id']}/cancel", headers=finance.headers)
    assert response.status_code == 409
    assert response.json["error"]["details"]["status"] in ("processing", "completed")
    assert wait_batch(client, finance, batch["id"])["status"] == "completed"
    assert balance(a) == "1.00"


def test_cancel_of_a_stored_batch_before_validation(app, make, worker):
    """A big upload waits (received) for the worker; cancelled then, its lines are still
    recorded (every one `cancelled`) so the report is complete, and nothing moves."""
    from api import create_app
    from db.core.config import get_settings

    client = create_app(get_settings().model_copy(update={"batch_sync_ingest_max_lines": 1})).test_client()
    finance, alice = make.user("finance"), make.user()
    a = make.account(alice)
    worker.pause()
    try:
        batch = upload(client, finance, csv_bytes(f",{a},1.00,USD,r-1", f",{a},2.00,USD,r-2")).json
        assert batch["status"] == "received"
        cancelled = client.post(f"/api/v1/batches/{batch['id']}/cancel", headers=finance.headers)
        assert cancelled.status_code == 200
    finally:
        worker.resume()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/batches/{batch['id']}", headers=finance.headers).json
        if body["total_items"]:
            break
        time.sleep(0.05)
    assert body["status"] == "cancelled"
    assert body["total_items"] == 2 and body["counts"]["cancelled"] == 2
    assert balance(a) == "0.00"
    with unit_of_work() as uow:
        left = uow.session.execute(text("SELECT count(*) FROM batch_uploads")).scalar()
    assert left == 0
