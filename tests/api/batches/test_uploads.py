"""Upload edge cases through the API: encodings, line endings, empty files, huge lines,
limits (413 naming the limit), and big files validated by the worker."""

from __future__ import annotations

import uuid

import pytest

from db.core.config import get_settings
from tests.fixtures.batches import HEADER, assert_counts_add_up, csv_bytes, items, upload, wait_batch
from tests.fixtures.ledger import balance


@pytest.fixture
def app_with(app):
    """An app built with some settings changed (limits, sync threshold)."""
    from api import create_app

    def build(**changes):
        application = create_app(get_settings().model_copy(update=changes))
        application.config["TESTING"] = True
        return application.test_client()

    return build


def test_bom_crlf_and_quoted_commas(client, make, worker):
    finance, alice = make.user("finance"), make.user()
    a = make.account(alice)
    content = csv_bytes(
        f'{a},,"1.00",USD,"invoice 7, March"', f',{a},2.00,USD,"a ""quoted"" ref"', newline="\r\n", bom=True
    )
    response = upload(client, finance, content)
    assert response.status_code == 202, response.json
    done = wait_batch(client, finance, response.json["id"])
    assert done["counts"]["completed"] == 1 and done["counts"]["failed"] == 1  # nothing to debit yet
    lines = items(client, finance, done["id"])
    assert [item["reference"] for item in lines] == ["invoice 7, March", 'a "quoted" ref']


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (HEADER.encode() + b"\n", "no lines"),
        (HEADER.encode(), "no lines"),
        (b"from,to,amount\n1,2,3\n", "wrong column set"),
        ("from_account_id,to_account_id,amount,currency\n".encode("utf-16"), "UTF-16"),
    ],
)
def test_files_that_cannot_be_a_batch_are_422_and_record_nothing(client, make, content, message):
    finance = make.user("finance")
    response = upload(client, finance, content)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"
    assert message in response.json["error"]["details"]["file"][0]
    assert client.get("/api/v1/batches", headers=finance.headers).json["items"] == []


def test_a_10_mb_line_is_rejected_cleanly(client, make):
    finance, alice = make.user("finance"), make.user()
    a = make.account(alice)
    huge = f",{a},1.00,USD," + "x" * (10 * 1024 * 1024)
    response = upload(client, finance, csv_bytes(f",{a},1.00,USD,before", huge, f",{a},1.00,USD,after"))
    assert response.status_code == 202, response.json
    batch = response.json
    assert batch["total_items"] == 3
    assert batch["counts"]["rejected"] == 1
    lines = items(client, finance, batch["id"])
    assert [(item["line"], item["status"]) for item in lines] == [
        (2, "pending"),
        (3, "rejected"),
        (4, "pending"),
    ]
    assert lines[1]["failure_code"] == "line_too_long"
    assert "4096 bytes" in lines[1]["failure_message"]


def test_invalid_utf8_line_is_rejected_with_its_line_number(client, make):
    finance, alice = make.user("finance"), make.user()
    a = make.account(alice)
    content = csv_bytes(f",{a},1.00,USD,ok") + f",{a},1.00,USD,caf".encode() + b"\xe9\n"
    batch = upload(client, finance, content).json
    rejected = items(client, finance, batch["id"], status="rejected")
    assert [(item["line"], item["failure_code"]) for item in rejected] == [(3, "invalid_encoding")]
    assert rejected[0]["raw_line"].endswith("caf\ufffd")


def test_upload_over_the_size_limit_is_413_naming_the_limit(app_with, make):
    client = app_with(batch_max_bytes=2048)
    finance = make.user("finance")
    lines = [f",{uuid.uuid4()},1.00,USD,r{n}" for n in range(100)]
    response = upload(client, finance, csv_bytes(*lines))
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"
    assert "2048 bytes" in response.json["error"]["message"]


def test_upload_over_the_line_limit_is_413_naming_the_limit(app_with, make):
    client = app_with(batch_max_lines=5)
    finance = make.user("finance")
    response = upload(client, finance, csv_bytes(*[f",{uuid.uuid4()},1.00,USD,r{n}" for n in range(6)]))
    assert response.status_code == 413
    assert "limit of 5 lines" in response.json["error"]["message"]


def test_json_over_the_limits_is_413(app_with, make):
    finance = make.user("finance")
    item = {"to_account_id": str(uuid.uuid4()), "amount": "1.00", "currency": "USD"}
    small_body = app_with(batch_max_json_bytes=200)
    response = small_body.post("/api/v1/batches", json={"items": [item] * 10}, headers=finance.headers)
    assert response.status_code == 413
    assert "200 bytes" in response.json["error"]["message"]
    few_lines = app_with(batch_max_lines=3)
    response = few_lines.post("/api/v1/batches", json={"items": [item] * 4}, headers=finance.headers)
    assert response.status_code == 413
    assert "limit of 3 items" in response.json["error"]["message"]


def test_big_file_is_stored_then_validated_by_the_worker(app_with, make, worker):
    client = app_with(batch_sync_ingest_max_lines=3)
    finance, alice = make.user("finance"), make.user()
    a = make.account(alice)
    content = csv_bytes(*[f",{a},1.00,USD,big-{n}" for n in range(20)], f",{a},oops,USD,big-x")
    response = upload(client, finance, content)
    assert response.status_code == 202
    assert response.json["status"] == "received"
    assert response.json["total_items"] == 0
    assert_counts_add_up(response.json)
    done = wait_batch(client, finance, response.json["id"])
    assert done["status"] == "completed_with_errors"
    assert done["total_items"] == 21
    assert done["counts"]["completed"] == 20 and done["counts"]["rejected"] == 1
    assert balance(a) == "20.00"
