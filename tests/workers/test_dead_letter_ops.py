"""Ops handling of dead letters: a poison transfer is dead-lettered, listed, and after
the fault is fixed an admin's retry completes it exactly once."""

from __future__ import annotations

import uuid

import db.ledger.posting
from tests.fixtures.http import accepted, transfer
from tests.fixtures.ledger import balance, transaction, wait_final


def _poison(monkeypatch):
    def broken(session, tx_ids):
        raise db.ledger.posting.LedgerCorrupted("simulated corrupt data")

    monkeypatch.setattr("workers.transactions.post_to_ledger", broken)


def _transfer(client, sender, source, target, amount="10.00"):
    return accepted(transfer(client, sender, source, target, amount))


def test_dead_lettered_transfer_is_listed_and_retry_completes_it(client, make, worker, monkeypatch):
    admin, alice = make.user("admin"), make.user()
    a, b = make.account(alice, balance="50.00"), make.account(alice)
    _poison(monkeypatch)
    tx_id = _transfer(client, alice, a, b)
    assert wait_final([tx_id]) == {tx_id: "dead_lettered"}
    assert balance(a) == "50.00"

    listed = client.get("/api/v1/admin/dead-letters", headers=admin.headers)
    assert listed.status_code == 200
    letters = [item for item in listed.json["items"] if item["transaction_id"] == tx_id]
    assert len(letters) == 1 and "LedgerCorrupted" in letters[0]["error"]
    assert client.get("/api/v1/admin/dead-letters", headers=alice.headers).status_code == 403

    monkeypatch.undo()  # the fault is fixed
    retried = client.post(
        f"/api/v1/admin/dead-letters/{letters[0]['message_id']}/retry", headers=admin.headers
    )
    assert retried.status_code == 202, retried.json
    assert wait_final([tx_id]) == {tx_id: "completed"}
    assert balance(a) == "40.00" and balance(b) == "10.00"
    remaining = client.get("/api/v1/admin/dead-letters", headers=admin.headers).json["items"]
    assert not [item for item in remaining if item["transaction_id"] == tx_id]
    # A second retry of a completed transaction is refused, and moves nothing.
    again = client.post(f"/api/v1/admin/dead-letters/{tx_id}/retry", headers=admin.headers)
    assert again.status_code == 409 and again.json["error"]["code"] == "conflict"
    assert balance(a) == "40.00"


def test_retry_by_transaction_id_works_when_redis_forgot_the_message(client, make, worker, monkeypatch):
    admin, alice = make.user("admin"), make.user()
    a, b = make.account(alice, balance="50.00"), make.account(alice)
    _poison(monkeypatch)
    tx_id = _transfer(client, alice, a, b)
    assert wait_final([tx_id]) == {tx_id: "dead_lettered"}
    letter = client.get("/api/v1/admin/dead-letters", headers=admin.headers).json["items"][0]
    assert (
        client.delete(f"/api/v1/admin/dead-letters/{letter['message_id']}", headers=admin.headers).status_code
        == 204
    )
    assert transaction(tx_id).status == "dead_lettered"  # purging the message keeps the row's record

    monkeypatch.undo()
    retried = client.post(f"/api/v1/admin/dead-letters/{tx_id}/retry", headers=admin.headers)
    assert retried.status_code == 202, retried.json
    assert wait_final([tx_id]) == {tx_id: "completed"}
    assert balance(b) == "10.00"


def test_unknown_dead_letter_is_404(client, make):
    admin = make.user("admin")
    assert client.post("/api/v1/admin/dead-letters/nope/retry", headers=admin.headers).status_code == 404
    assert client.delete("/api/v1/admin/dead-letters/nope", headers=admin.headers).status_code == 404


def test_a_batch_line_cannot_be_retried_on_its_own(client, make):
    """A dead-lettered batch line belongs to its batch (atomic batches move all or nothing,
    and the single-transfer sweeper skips batch lines): retrying it alone is refused."""
    import uuid

    from sqlalchemy import text

    from db.session import get_engine
    from tests.fixtures.batches import csv_bytes, upload

    admin, finance, alice = make.user("admin"), make.user("finance"), make.user()
    a, b = make.account(alice, balance="50.00"), make.account(alice)
    batch = upload(client, finance, csv_bytes(f"{a},{b},5.00,USD,line-1")).json
    with get_engine().begin() as connection:
        line_id = connection.execute(
            text("UPDATE transactions SET status = 'dead_lettered' WHERE batch_id = :id RETURNING id"),
            {"id": uuid.UUID(batch["id"])},
        ).scalar_one()
    refused = client.post(f"/api/v1/admin/dead-letters/{line_id}/retry", headers=admin.headers)
    assert refused.status_code == 409 and refused.json["error"]["code"] == "conflict"
    assert transaction(line_id).status == "dead_lettered"
    assert balance(b) == "0.00"


def test_a_dead_lettered_batch_is_reopened_and_resumes_at_its_cursor(client, make):
    from db.batches import posting as batch_posting
    from db.session import unit_of_work as uow_
    from tests.fixtures.batches import batch_row, csv_bytes, line_statuses, upload
    from tests.fixtures.ledger import audit_actions, balance
    from workers import batches as batch_actors
    from workers import broker
    from workers.dead_letters import retry

    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    batch = upload(client, finance, csv_bytes(*[f"{a},{b},1.00,USD,d-{n}" for n in range(4)])).json
    with uow_() as uow:  # the first two lines are applied, then the chunk dead-letters
        batch_posting.apply_chunk(uow.session, uuid.UUID(batch["id"]), 0, chunk_size=4)
    batch_actors.record_chunk_dead_letter(
        {"batch_id": batch["id"], "start_line": 4}, "OperationalError: down"
    )
    assert batch_row(batch["id"]).status == "completed_with_errors"
    assert line_statuses(batch["id"]) == ["completed", "completed", "dead_lettered", "dead_lettered"]

    outcome = retry(broker, batch["id"])  # Redis no longer has the message: the batch id is enough
    assert outcome["requeued"] is True and outcome["reopened_lines"] == 2, outcome
    row = batch_row(batch["id"])
    assert row.status == "processing" and row.failure_code is None and row.next_line == 4
    assert "batch.reopened" in audit_actions(batch["id"])

    batch_actors.apply_chunk(batch["id"], row.next_line)  # the message the retry sent
    row = batch_row(batch["id"])
    assert row.status == "completed" and row.completed_count == 4 and row.dead_lettered_count == 0
    assert balance(b) == "4.00"

    again = retry(broker, batch["id"])  # nothing left to retry: said so
    assert again["requeued"] is False and again["reopened_lines"] == 0
    assert balance(b) == "4.00"
