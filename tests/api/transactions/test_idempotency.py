"""The Idempotency-Key contract of API.md: replays return the original, a reused key
with another body is refused, concurrent requests with one key create one transaction,
and keys are scoped to the user."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.fixtures.http import concurrently, transfer
from tests.fixtures.ledger import balance, sql, wait_final


def _transaction_count() -> int:
    return sql("SELECT count(*) FROM transactions WHERE type = 'transfer'")[0][0]


@pytest.fixture
def pair(make):
    alice, bob = make.user(), make.user()
    return alice, make.account(alice, balance="100.00"), make.account(bob)


def test_replay_with_same_key_and_body_returns_the_original_with_202(client, pair, worker):
    alice, a, b = pair
    key = {"Idempotency-Key": "order-1001"}

    first = transfer(client, alice, a, b, "10.00", headers=key)
    assert first.status_code == 202
    assert "Idempotent-Replayed" not in first.headers
    assert wait_final([first.json["id"]]) == {first.json["id"]: "completed"}

    replay = transfer(client, alice, a, b, "10.00", headers=key)

    assert replay.status_code == 202
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers["Location"] == f"/api/v1/transactions/{first.json['id']}"
    assert replay.json["id"] == first.json["id"]
    assert replay.json["idempotency_key"] == "order-1001"
    assert replay.json["status"] == "completed"  # the original, as it is now
    assert _transaction_count() == 1
    assert balance(a) == "90.00"  # money moved once


def test_same_key_with_a_different_body_is_422_idempotency_key_reused(client, pair):
    alice, a, b = pair
    key = {"Idempotency-Key": "order-1002"}
    first = transfer(client, alice, a, b, "10.00", headers=key)
    assert first.status_code == 202

    reused = transfer(client, alice, a, b, "11.00", headers=key)

    assert reused.status_code == 422
    error = reused.json["error"]
    assert error["code"] == "idempotency_key_reused"
    assert error["message"]
    assert error["details"] == {"transaction_id": first.json["id"]}
    assert _transaction_count() == 1


def test_concurrent_requests_with_one_key_create_exactly_one_transaction(app, pair):
    alice, a, b = pair
    key = {"Idempotency-Key": "order-1003"}

    responses = concurrently(app, 20, lambda c, _: transfer(c, alice, a, b, "10.00", headers=key))

    assert [r.status_code for r in responses] == [202] * 20, [r.json for r in responses]
    assert len({r.json["id"] for r in responses}) == 1
    replayed = Counter(r.headers.get("Idempotent-Replayed") for r in responses)
    assert replayed == {None: 1, "true": 19}
    assert _transaction_count() == 1


def test_another_user_with_the_same_key_gets_their_own_transaction(client, make, pair):
    alice, a, b = pair
    carol = make.user()
    c = make.account(carol, balance="50.00")
    key = {"Idempotency-Key": "shared-key"}

    mine = transfer(client, alice, a, b, "10.00", headers=key)
    theirs = transfer(client, carol, c, b, "10.00", headers=key)

    assert (mine.status_code, theirs.status_code) == (202, 202)
    assert mine.json["id"] != theirs.json["id"]
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.json["from_account_id"] == str(c)
    assert _transaction_count() == 2


INVALID_KEYS = {"256_chars": "k" * 256, "space": "has space", "empty": "", "tab": "tab\tkey"}


def test_invalid_idempotency_key_is_422_validation_error(client, pair):
    alice, a, b = pair
    outcomes = {}
    for name, key in INVALID_KEYS.items():
        response = transfer(client, alice, a, b, "10.00", headers={"Idempotency-Key": key})
        assert response.status_code == 422, (name, response.json)
        outcomes[name] = (response.json["error"]["code"], list(response.json["error"]["details"]))

    assert outcomes == dict.fromkeys(INVALID_KEYS, ("validation_error", ["Idempotency-Key"]))
    assert _transaction_count() == 0


def test_longest_valid_idempotency_key_is_accepted(client, pair):
    alice, a, b = pair
    response = transfer(client, alice, a, b, "10.00", headers={"Idempotency-Key": "k" * 255})
    assert response.status_code == 202
    assert response.json["idempotency_key"] == "k" * 255


@pytest.mark.parametrize(("first", "again"), [("2.50", "2.5"), ("2", "2.00"), ("0.10", "0.1")])
def test_one_amount_written_two_ways_is_a_replay_not_a_reused_key(client, pair, first, again):
    """The fingerprint is over the parsed request (minor units), not the raw string."""
    alice, a, b = pair
    key = {"Idempotency-Key": f"same-amount-{first}"}
    original = transfer(client, alice, a, b, first, headers=key)
    assert original.status_code == 202

    replay = transfer(client, alice, a, b, again, headers=key)

    assert replay.status_code == 202, replay.json
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json["id"] == original.json["id"]
    assert _transaction_count() == 1
