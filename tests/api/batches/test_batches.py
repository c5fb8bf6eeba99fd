"""Finance batches through the API, a real Redis broker and a real worker."""

from __future__ import annotations

import csv
import io
import uuid

from sqlalchemy import func, select, text

from db.models import Batch, LedgerEntry, Transaction
from db.session import unit_of_work
from tests.fixtures.batches import assert_counts_add_up, csv_bytes, items, upload, wait_batch
from tests.fixtures.ledger import balance


def set_status(account_id, status: str) -> None:
    with unit_of_work() as uow:
        uow.session.execute(
            text("UPDATE accounts SET status = :s WHERE id = :id"), {"s": status, "id": str(account_id)}
        )


def count(model) -> int:
    with unit_of_work() as uow:
        return uow.session.scalar(select(func.count()).select_from(model))


def results_csv(client, user, batch_id) -> list[dict]:
    response = client.get(f"/api/v1/batches/{batch_id}/results.csv", headers=user.headers)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.data.decode())))


def test_mixed_file_every_line_accounted_for_in_input_order(client, make, worker):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a = make.account(alice, balance="100.00")
    b = make.account(bob)
    frozen = make.account(bob)
    set_status(frozen, "frozen")
    euros = make.account(bob, currency="EUR")
    missing = uuid.uuid4()
    content = csv_bytes(
        f"{a},{b},10.00,USD,pay-1",  # 2 completed
        f"{a},{b},10.005,USD,pay-2",  # 3 rejected: too many decimals
        f"{a},{missing},1.00,USD,pay-3",  # 4 rejected: unknown account
        f"{a},{frozen},1.00,USD,pay-4",  # 5 rejected: inactive
        f"{a},{euros},1.00,USD,pay-5",  # 6 rejected: currency mismatch
        f"{a},{b},1.00,USD,pay-1",  # 7 rejected: duplicate reference
        f"{a},{b},1.00,USD",  # 8 rejected: wrong field count
        "not-an-id,{b},1.00,USD,pay-8",  # 9 rejected: not an account id
        f"{a},{b},500.00,USD,pay-9",  # 10 failed by the worker: insufficient funds
        f",{b},5.00,USD,pay-10",  # 11 completed: a credit
        f"{b},,2.50,USD,pay-11",  # 12 completed: a debit (bob got 10 + 5 by then)
    )
    response = upload(client, finance, content)
    assert response.status_code == 202, response.json
    accepted = response.json
    assert accepted["status"] == "processing"
    assert accepted["total_items"] == 11
    assert accepted["counts"]["rejected"] == 7
    assert_counts_add_up(accepted)
    assert response.headers["Location"] == f"/api/v1/batches/{accepted['id']}"

    done = wait_batch(client, finance, accepted["id"])
    assert done["status"] == "completed_with_errors"
    assert done["counts"] == {
        "pending": 0,
        "completed": 3,
        "failed": 1,
        "rejected": 7,
        "cancelled": 0,
        "dead_lettered": 0,
    }
    assert_counts_add_up(done)
    assert balance(a) == "90.00"
    assert balance(b) == "12.50"

    by_line = {item["line"]: item for item in items(client, finance, accepted["id"])}
    assert sorted(by_line) == list(range(2, 13))
    expected_codes = {
        3: "invalid_amount",
        4: "unknown_account",
        5: "account_inactive",
        6: "currency_mismatch",
        7: "duplicate_reference",
        8: "wrong_field_count",
        9: "invalid_account_id",
    }
    for line, code in expected_codes.items():
        assert by_line[line]["status"] == "rejected"
        assert by_line[line]["failure_code"] == code, by_line[line]
        assert by_line[line]["failure_message"]
    assert "line 2" in by_line[7]["failure_message"]
    assert by_line[10]["status"] == "failed"
    assert by_line[10]["failure_code"] == "insufficient_funds"
    assert by_line[11]["type"] == "credit" and by_line[11]["from_account_id"] is None
    assert by_line[12]["type"] == "debit" and by_line[12]["to_account_id"] is None

    rows = results_csv(client, finance, accepted["id"])
    assert [int(row["line"]) for row in rows] == list(range(2, 13))
    assert [row["status"] for row in rows] == [
        "completed",
        *["rejected"] * 7,
        "failed",
        "completed",
        "completed",
    ]
    assert rows[0]["transaction_id"] == by_line[2]["transaction_id"]
    assert rows[0]["amount"] == "10.00" and rows[0]["reference"] == "pay-1"
    assert rows[1]["amount"] == "10.005"  # a rejected line echoes what was sent
    assert rows[8]["failure_code"] == "insufficient_funds"

    failed = items(client, finance, accepted["id"], status="failed")
    assert [item["line"] for item in failed] == [10]
    rejected = items(client, finance, accepted["id"], status="rejected")
    assert [item["line"] for item in rejected] == [3, 4, 5, 6, 7, 8, 9]

    # The lines are ordinary transactions carrying the batch id.
    history = client.get(
        "/api/v1/transactions/history", query_string={"batch_id": accepted["id"]}, headers=finance.headers
    ).json["items"]
    assert len(history) == 4
    assert {tx["batch_id"] for tx in history} == {accepted["id"]}


def test_items_paginate_in_line_order(client, make):
    finance, alice = make.user("finance"), make.user()
    a = make.account(alice)
    content = csv_bytes(*[f",{a},1.00,USD,p-{n}" for n in range(7)], f",{a},x,USD,bad")
    batch = upload(client, finance, content).json
    page = client.get(
        f"/api/v1/batches/{batch['id']}/items", query_string={"limit": 3}, headers=finance.headers
    ).json
    assert [item["line"] for item in page["items"]] == [2, 3, 4]
    second = client.get(
        f"/api/v1/batches/{batch['id']}/items",
        query_string={"limit": 3, "cursor": page["next_cursor"]},
        headers=finance.headers,
    ).json
    assert [item["line"] for item in second["items"]] == [5, 6, 7]
    assert [item["line"] for item in items(client, finance, batch["id"], limit=3)] == list(range(2, 10))
    pending = items(client, finance, batch["id"], status="pending", limit=2)
    assert [item["line"] for item in pending] == list(range(2, 9))


def test_customers_may_not_use_batches(client, make):
    alice = make.user()
    a = make.account(alice, balance="10.00")
    response = upload(client, alice, csv_bytes(f"{a},,1.00,USD,x"))
    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"
    assert client.get("/api/v1/batches", headers=alice.headers).status_code == 403
    assert client.get("/api/v1/batches").status_code == 401
    assert count(Batch) == 0


def test_atomic_batch_with_a_failing_line_moves_nothing(client, make, worker):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a = make.account(alice, balance="50.00")
    b = make.account(bob)
    entries_before = count(LedgerEntry)
    content = csv_bytes(
        f"{a},{b},20.00,USD,at-1",
        f"{a},{b},20.00,USD,at-2",
        f"{a},{b},20.00,USD,at-3",  # only 10.00 left: insufficient funds
        f",{b},5.00,USD,at-4",
    )
    response = upload(client, finance, content, mode="atomic")
    assert response.status_code == 202
    done = wait_batch(client, finance, response.json["id"])
    assert done["status"] == "failed"
    assert done["mode"] == "atomic"
    assert done["failure_code"] == "insufficient_funds"
    assert "line 4" in done["failure_message"]
    assert done["counts"]["completed"] == 0
    assert done["counts"]["failed"] == 1
    assert done["counts"]["cancelled"] == 3
    assert_counts_add_up(done)
    assert balance(a) == "50.00"
    assert balance(b) == "0.00"
    assert count(LedgerEntry) == entries_before
    statuses = [item["status"] for item in items(client, finance, done["id"])]
    assert statuses == ["cancelled", "cancelled", "failed", "cancelled"]


def test_atomic_batch_with_a_rejected_line_moves_nothing(client, make, worker):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a = make.account(alice, balance="50.00")
    b = make.account(bob)
    response = upload(client, finance, csv_bytes(f"{a},{b},1.00,USD,r1", f"{a},{b},-1,USD,r2"), mode="atomic")
    batch = response.json
    assert batch["status"] == "failed"
    assert batch["failure_code"] == "lines_rejected"
    assert batch["counts"]["rejected"] == 1 and batch["counts"]["cancelled"] == 1
    assert_counts_add_up(batch)
    assert balance(a) == "50.00"


def test_atomic_batch_applies_every_line_when_all_pass(client, make, worker):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a = make.account(alice, balance="30.00")
    b = make.account(bob)
    content = csv_bytes(f"{a},{b},20.00,USD,ok-1", f"{b},{a},5.00,USD,ok-2", f"{a},{b},15.00,USD,ok-3")
    done = wait_batch(client, finance, upload(client, finance, content, mode="atomic").json["id"])
    assert done["status"] == "completed"
    assert done["counts"]["completed"] == 3
    assert balance(a) == "0.00"
    assert balance(b) == "30.00"


def test_same_file_twice_is_a_duplicate_pointing_at_the_first(client, make):
    finance, alice = make.user("finance"), make.user()
    a = make.account(alice)
    content = csv_bytes(f",{a},1.00,USD,once")
    first = upload(client, finance, content)
    assert first.status_code == 202
    again = upload(client, finance, content, filename="renamed.csv")
    assert again.status_code == 409
    assert again.json["error"]["code"] == "conflict"
    assert again.json["error"]["details"]["batch_id"] == first.json["id"]
    other_finance = make.user("finance")
    assert upload(client, other_finance, content).status_code == 409
    assert count(Batch) == 1


def test_idempotency_key_replays_the_batch_and_refuses_another_body(client, make):
    finance, alice = make.user("finance"), make.user()
    a = make.account(alice)
    content = csv_bytes(f",{a},1.00,USD,key-1")
    headers = {"Idempotency-Key": "batch-key-1"}
    first = upload(client, finance, content, headers=headers)
    replay = upload(client, finance, content, headers=headers)
    assert replay.status_code == 202
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json["id"] == first.json["id"]
    other = upload(client, finance, csv_bytes(f",{a},2.00,USD,key-2"), headers=headers)
    assert other.status_code == 422
    assert other.json["error"]["code"] == "idempotency_key_reused"
    assert count(Batch) == 1


def test_a_failed_batch_releases_its_content_for_a_new_attempt(client, make, worker):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a = make.account(alice, balance="1.00")
    b = make.account(bob)
    content = csv_bytes(f"{a},{b},5.00,USD,retry-me")
    first = wait_batch(client, finance, upload(client, finance, content, mode="atomic").json["id"])
    assert first["status"] == "failed"
    make.fund(a, "10.00")
    second = upload(client, finance, content, mode="atomic")
    assert second.status_code == 202
    assert wait_batch(client, finance, second.json["id"])["status"] == "completed"


def test_dry_run_reports_every_line_and_records_nothing(client, make):
    finance, alice = make.user("finance"), make.user()
    a = make.account(alice, balance="5.00")
    counts_before = (count(Batch), count(Transaction), count(LedgerEntry))
    content = csv_bytes(f"{a},,1.00,USD,d-1", f"{a},,1.001,USD,d-2", f",{uuid.uuid4()},1.00,USD,d-3")
    response = upload(client, finance, content, query="?dry_run=true")
    assert response.status_code == 200
    report = response.json
    assert report["dry_run"] is True
    assert report["total_items"] == 3
    assert report["accepted"] == 1
    assert report["rejected"] == 2
    assert [(r["line"], r["code"]) for r in report["rejected_items"]] == [
        (3, "invalid_amount"),
        (4, "unknown_account"),
    ]
    assert report["duplicate_of"] is None
    assert (count(Batch), count(Transaction), count(LedgerEntry)) == counts_before
    # A dry run does not claim the content either.
    assert upload(client, finance, content).status_code == 202


def test_json_items_become_a_batch(client, make, worker):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a = make.account(alice, balance="10.00")
    b = make.account(bob)
    body = {
        "items": [
            {
                "from_account_id": str(a),
                "to_account_id": str(b),
                "amount": "4.00",
                "currency": "USD",
                "reference": "j1",
            },
            {
                "from_account_id": str(a),
                "to_account_id": str(b),
                "amount": 4,
                "currency": "USD",
                "reference": "j2",
            },
            {"to_account_id": str(b), "amount": "1.00", "currency": "USD"},
        ],
        "reference": "json batch",
    }
    response = client.post("/api/v1/batches", json=body, headers=finance.headers)
    assert response.status_code == 202, response.json
    done = wait_batch(client, finance, response.json["id"])
    assert done["reference"] == "json batch"
    assert done["counts"]["completed"] == 2 and done["counts"]["rejected"] == 1
    lines = items(client, finance, done["id"])
    assert [(item["line"], item["status"]) for item in lines] == [
        (1, "completed"),
        (2, "rejected"),
        (3, "completed"),
    ]
    assert "JSON number" in lines[1]["failure_message"]
    assert balance(b) == "5.00"


def test_batch_list_and_unknown_batch(client, make):
    finance, alice = make.user("finance"), make.user()
    a = make.account(alice)
    ids = [upload(client, finance, csv_bytes(f",{a},{n}.00,USD,l-{n}")).json["id"] for n in range(1, 4)]
    listed = client.get("/api/v1/batches", query_string={"limit": 2}, headers=finance.headers).json
    assert [b["id"] for b in listed["items"]] == ids[::-1][:2]
    rest = client.get(
        "/api/v1/batches", query_string={"cursor": listed["next_cursor"]}, headers=finance.headers
    ).json
    assert [b["id"] for b in rest["items"]] == ids[:1]
    unknown = client.get(f"/api/v1/batches/{uuid.uuid4()}", headers=finance.headers)
    assert unknown.status_code == 404
    assert unknown.json["error"]["code"] == "not_found"


def test_missing_file_and_bad_fields_are_422(client, make):
    finance = make.user("finance")
    no_file = client.post(
        "/api/v1/batches",
        data={"mode": "atomic"},
        content_type="multipart/form-data",
        headers=finance.headers,
    )
    assert no_file.status_code == 422
    assert "file" in no_file.json["error"]["details"]
    bad_mode = upload(client, finance, csv_bytes(f",{uuid.uuid4()},1,USD,x"), mode="sometimes")
    assert bad_mode.status_code == 422
    assert "mode" in bad_mode.json["error"]["details"]
    naive_time = upload(
        client, finance, csv_bytes(f",{uuid.uuid4()},1,USD,x"), scheduled_for="2030-01-01T00:00:00"
    )
    assert naive_time.status_code == 422
    assert "scheduled_for" in naive_time.json["error"]["details"]


def test_a_file_whose_every_line_is_rejected_fails_without_processing(client, make):
    finance = make.user("finance")
    batch = upload(client, finance, csv_bytes(f",{uuid.uuid4()},1.00,USD,a", ",,1.00,USD,b")).json
    assert batch["status"] == "failed"
    assert batch["failure_code"] == "nothing_applied"
    assert batch["counts"]["rejected"] == batch["total_items"] == 2
    assert batch["completed_at"] is not None


def test_batches_are_in_the_openapi_document(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    post = paths["/api/v1/batches"]["post"]
    assert set(post["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert {"200", "202", "403", "409", "413", "422"} <= set(post["responses"])
    assert "/api/v1/batches/{batch_id}/results.csv" in paths
    assert "/api/v1/batches/{batch_id}/cancel" in paths


def test_a_batch_scheduled_past_the_horizon_is_refused_like_a_transfer(client, make):
    """`scheduled_for` in 2126 was accepted for a batch and refused for a transfer."""
    finance = make.user("finance")
    content = csv_bytes(f",{uuid.uuid4()},1.00,USD,far")
    far = upload(client, finance, content, scheduled_for="2126-01-01T00:00:00Z")
    assert far.status_code == 422, far.json
    assert far.json["error"]["code"] == "validation_error"
    assert "scheduled_for" in far.json["error"]["details"]
    as_json = client.post(
        "/api/v1/batches",
        json={
            "items": [{"to_account_id": str(uuid.uuid4()), "amount": "1.00", "currency": "USD"}],
            "scheduled_for": "2126-01-01T00:00:00Z",
        },
        headers=finance.headers,
    )
    assert as_json.status_code == 422 and "scheduled_for" in as_json.json["error"]["details"], as_json.json
    with unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Batch)) == 0
