"""/schedules: creating, reading, pausing, resuming and deleting standing orders."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.fixtures.scheduling import iso, later

START = (datetime.now(UTC) + timedelta(days=2)).replace(hour=6, minute=0, second=0, microsecond=0)


def _create(client, user, source, target, **fields):
    body = {
        "from_account_id": str(source),
        "to_account_id": str(target),
        "amount": "25.00",
        "currency": "USD",
    }
    body.update(fields)
    return client.post("/api/v1/schedules", json=body, headers=user.headers)


@pytest.fixture
def parties(make):
    alice, bob = make.user(), make.user()
    return alice, bob, make.account(alice, balance="100.00"), make.account(bob)


def test_create_an_interval_schedule(client, parties):
    alice, _, a, b = parties
    response = _create(client, alice, a, b, interval_seconds=3600, start_at=iso(START), reference="rent")
    assert response.status_code == 201, response.json
    body = response.json
    assert body["status"] == "active"
    assert body["amount"] == "25.00" and body["reference"] == "rent"
    assert body["interval_seconds"] == 3600 and body["cron"] is None and body["timezone"] == "UTC"
    assert datetime.fromisoformat(body["next_run_at"]) == START
    assert body["misfire_policy"] == "run_once"

    fetched = client.get(f"/api/v1/schedules/{body['id']}", headers=alice.headers)
    assert fetched.status_code == 200 and fetched.json == body
    listed = client.get("/api/v1/schedules", headers=alice.headers).json
    assert [item["id"] for item in listed["items"]] == [body["id"]]


def test_cron_runs_in_the_schedules_time_zone(client, parties):
    alice, _, a, b = parties
    response = _create(
        client, alice, a, b, cron="0 9 * * 1-5", timezone="America/New_York", start_at=iso(START)
    )
    assert response.status_code == 201, response.json
    next_run = datetime.fromisoformat(response.json["next_run_at"])
    local = next_run.astimezone(ZoneInfo("America/New_York"))
    assert (local.hour, local.minute) == (9, 0)
    assert local.strftime("%a") in {"Mon", "Tue", "Wed", "Thu", "Fri"}
    assert next_run >= START


def test_without_start_at_an_interval_schedule_runs_now(client, parties):
    alice, _, a, b = parties
    before = datetime.now(UTC)
    response = _create(client, alice, a, b, interval_seconds=86400)
    next_run = datetime.fromisoformat(response.json["next_run_at"])
    assert before - timedelta(seconds=1) <= next_run <= before + timedelta(seconds=2)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": "0 9 * * *", "interval_seconds": 3600}, "cron"),
        ({}, "cron"),
        ({"interval_seconds": 59}, "interval_seconds"),
        ({"cron": "not a cron"}, "cron"),
        ({"cron": "0 9 1 * 1"}, "cron"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "timezone"),
        (
            {"interval_seconds": 3600, "start_at": iso(START), "end_at": iso(START - timedelta(hours=1))},
            "end_at",
        ),
        ({"interval_seconds": 3600, "start_at": iso(later(days=400))}, "start_at"),
        ({"interval_seconds": 3600, "amount": 25}, "amount"),
        ({"interval_seconds": 3600, "amount": "25.001"}, "amount"),
        ({"interval_seconds": 3600, "misfire_policy": "burst"}, "misfire_policy"),
        ({"interval_seconds": 3600, "surprise": True}, "surprise"),
    ],
)
def test_invalid_schedules_are_422_with_the_field(client, parties, fields, field):
    alice, _, a, b = parties
    response = _create(client, alice, a, b, **fields)
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == "validation_error"
    assert field in response.json["error"]["details"], response.json


def test_request_time_rules_of_a_transfer_apply(client, make, parties):
    alice, bob, a, b = parties
    eur = make.account(bob, currency="EUR")
    assert _create(client, alice, a, eur, interval_seconds=3600).json["error"]["code"] == "currency_mismatch"
    assert _create(client, alice, a, a, interval_seconds=3600).json["error"]["code"] == "same_account"
    stolen = _create(client, bob, a, b, interval_seconds=3600)  # from someone else's account
    assert stolen.status_code == 404


def test_pause_resume_delete(client, parties):
    alice, _, a, b = parties
    schedule = _create(client, alice, a, b, interval_seconds=3600, start_at=iso(START)).json
    url = f"/api/v1/schedules/{schedule['id']}"

    paused = client.post(f"{url}/pause", headers=alice.headers)
    assert paused.status_code == 200
    assert paused.json["status"] == "paused" and paused.json["next_run_at"] is None
    assert paused.json["paused_reason"]
    assert client.post(f"{url}/pause", headers=alice.headers).status_code == 200  # idempotent

    resumed = client.post(f"{url}/resume", headers=alice.headers)
    assert resumed.status_code == 200
    assert resumed.json["status"] == "active" and resumed.json["paused_reason"] is None
    assert datetime.fromisoformat(resumed.json["next_run_at"]) == START

    assert client.delete(url, headers=alice.headers).status_code == 204
    assert client.delete(url, headers=alice.headers).status_code == 204  # idempotent
    gone = client.get(url, headers=alice.headers).json
    assert gone["status"] == "deleted" and gone["next_run_at"] is None
    for action in ("pause", "resume"):
        response = client.post(f"{url}/{action}", headers=alice.headers)
        assert response.status_code == 409 and response.json["error"]["code"] == "conflict"
    assert client.get("/api/v1/schedules", headers=alice.headers).json["items"] == []
    deleted = client.get("/api/v1/schedules?status=deleted", headers=alice.headers).json["items"]
    assert [item["id"] for item in deleted] == [schedule["id"]]


def test_other_customers_see_nothing(client, make, parties):
    alice, bob, a, b = parties
    schedule = _create(client, alice, a, b, interval_seconds=3600, start_at=iso(START)).json
    url = f"/api/v1/schedules/{schedule['id']}"
    for who in (make.user(), bob):  # a stranger, and the recipient
        assert client.get(url, headers=who.headers).status_code == 404
        assert client.get(f"{url}/runs", headers=who.headers).status_code == 404
        assert client.post(f"{url}/pause", headers=who.headers).status_code == 404
        assert client.post(f"{url}/resume", headers=who.headers).status_code == 404
        assert client.delete(url, headers=who.headers).status_code == 404
        assert client.get("/api/v1/schedules", headers=who.headers).json["items"] == []
    assert client.get(f"/api/v1/schedules/{uuid.uuid4()}", headers=alice.headers).status_code == 404
    assert client.get(url, headers=make.user("finance").headers).status_code == 200


def test_finance_can_set_up_a_schedule_the_account_owner_sees(client, make, parties):
    alice, _, a, b = parties
    finance = make.user("finance")
    created = _create(client, finance, a, b, interval_seconds=3600, start_at=iso(START))
    assert created.status_code == 201
    assert client.get(f"/api/v1/schedules/{created.json['id']}", headers=alice.headers).status_code == 200


def test_a_customer_cannot_pause_resume_or_delete_what_finance_set_up(client, make, parties):
    alice, _, a, b = parties
    finance = make.user("finance")
    url = f"/api/v1/schedules/{_create(client, finance, a, b, interval_seconds=3600, start_at=iso(START)).json['id']}"
    assert client.post(f"{url}/pause", headers=alice.headers).status_code == 404
    assert client.delete(url, headers=alice.headers).status_code == 404
    assert client.get(url, headers=alice.headers).json["status"] == "active"
    assert client.post(f"{url}/pause", headers=finance.headers).status_code == 200
    assert client.post(f"{url}/resume", headers=alice.headers).status_code == 404
    assert client.get(url, headers=alice.headers).json["status"] == "paused"
    assert client.delete(url, headers=make.user("admin").headers).status_code == 204


def test_runs_are_listed_as_ordinary_transactions(client, parties):
    from workers.schedules import create_due_runs

    alice, _, a, b = parties
    schedule = _create(client, alice, a, b, interval_seconds=3600, start_at=iso(START)).json
    created = create_due_runs(START)
    assert len(created) == 1

    runs = client.get(f"/api/v1/schedules/{schedule['id']}/runs", headers=alice.headers).json
    assert [run["id"] for run in runs["items"]] == [str(created[0])]
    run = runs["items"][0]
    assert run["schedule_id"] == schedule["id"] and run["type"] == "transfer"
    assert datetime.fromisoformat(run["scheduled_run_at"]) == START
    assert run["status"] == "pending" and run["amount"] == "25.00"
    after = client.get(f"/api/v1/schedules/{schedule['id']}", headers=alice.headers).json
    assert after["run_count"] == 1
    assert datetime.fromisoformat(after["last_run_at"]) == START
    assert datetime.fromisoformat(after["next_run_at"]) == START + timedelta(hours=1)
