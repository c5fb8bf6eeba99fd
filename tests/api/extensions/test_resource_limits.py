"""Resource limits (OWASP API4): capped pages, capped long-polls, and idempotency keys
that belong to the user who sent them."""

from __future__ import annotations

import time
import uuid

from tests.fixtures.http import app_with, transfer


def test_page_size_is_capped(make):
    admin = make.user("admin")
    for _ in range(3):
        make.user()
    client = app_with(page_size_max=2).test_client()
    page = client.get("/api/v1/users?limit=1000", headers=admin.headers)
    assert page.status_code == 200
    assert len(page.json["items"]) == 2
    assert page.json["next_cursor"] is not None


def test_page_size_must_be_positive(client, make):
    admin = make.user("admin")
    assert client.get("/api/v1/users?limit=0", headers=admin.headers).status_code == 422


def test_long_poll_wait_is_capped(make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    client = app_with(long_poll_max_s=1).test_client()
    tx = transfer(client, alice, a, b, "1.00").json
    started = time.monotonic()
    polled = client.get(f"/api/v1/transactions/{tx['id']}?wait=30", headers=alice.headers)  # no worker runs
    elapsed = time.monotonic() - started
    assert polled.status_code == 200 and polled.json["status"] == "pending"
    assert 0.9 <= elapsed < 3


def test_another_users_idempotency_key_gets_a_transaction_of_its_own(client, make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="50.00"), make.account(bob, balance="50.00")
    key = {"Idempotency-Key": f"shared-{uuid.uuid4()}"}

    first = transfer(client, alice, a, b, "1.00", headers=key, reference="alice's")
    second = transfer(client, bob, b, a, "2.00", headers=key)
    assert first.status_code == second.status_code == 202
    assert second.json["id"] != first.json["id"]
    assert "Idempotent-Replayed" not in second.headers
    assert (second.json["amount"], second.json["from_account_id"], second.json["reference"]) == (
        "2.00",
        str(b),
        None,
    )
    assert "alice's" not in second.get_data(as_text=True)
    # Each user's own replay still works.
    replay = transfer(client, bob, b, a, "2.00", headers=key)
    assert replay.json["id"] == second.json["id"] and replay.headers["Idempotent-Replayed"] == "true"
