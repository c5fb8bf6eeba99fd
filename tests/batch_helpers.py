"""Helpers shared by the batch tests: build CSV files, upload them, wait for batches."""

from __future__ import annotations

import io
import time

HEADER = "from_account_id,to_account_id,amount,currency,reference"
FINAL = ("completed", "completed_with_errors", "failed", "cancelled")


def csv_bytes(*lines: str, header: str = HEADER, newline: str = "\n", bom: bool = False) -> bytes:
    text = newline.join([header, *lines]) + newline
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


def upload(client, user, content: bytes, *, filename="payments.csv", query="", headers=None, **form):
    data = {"file": (io.BytesIO(content), filename), **form}
    return client.post(
        f"/api/v1/batches{query}",
        data=data,
        content_type="multipart/form-data",
        headers={**user.headers, **(headers or {})},
    )


def wait_batch(client, user, batch_id, *, statuses=FINAL, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/v1/batches/{batch_id}", headers=user.headers).json
        if body["status"] in statuses or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def items(client, user, batch_id, **query) -> list[dict]:
    collected, cursor = [], None
    while True:
        params = {"limit": 200, **query, **({"cursor": cursor} if cursor else {})}
        body = client.get(f"/api/v1/batches/{batch_id}/items", query_string=params, headers=user.headers).json
        collected += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return collected


def assert_counts_add_up(batch: dict) -> None:
    assert sum(batch["counts"].values()) == batch["total_items"], batch
