"""Recording a new transaction in one statement (db/transactions/recording.py): the row,
its audit row and its `transaction.created` event are written together or not at all,
and the event's data is the transaction exactly as the API's answer renders it, the
timestamps the database sets included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import literal, select

from db.events.render import iso_sql
from db.session import get_engine
from tests.api.transactions.test_holds import capture, hold
from tests.fixtures.http import transfer
from tests.fixtures.ledger import apply_now, audit_actions, sql


def _created_event(tx_id: str) -> dict:
    (data,) = sql(
        "SELECT data FROM events WHERE type = 'transaction.created' AND data->>'id' = :id", id=tx_id
    )[0]
    return data


def _answer(response) -> dict:
    assert response.status_code == 202, response.json
    return response.json


def test_the_created_event_is_the_202_answer_field_for_field(client, make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    body = _answer(transfer(client, alice, a, b, "2.50", reference="rent"))
    assert _created_event(body["id"]) == body
    assert audit_actions(body["id"]) == ["transaction.requested.transfer"]


def test_a_hold_and_its_capture_carry_the_timestamps_the_database_set(client, make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    held = _answer(hold(client, alice, a, b, "30.00", expires_in_seconds=600))
    assert held["expires_at"] is not None
    assert _created_event(held["id"]) == held
    assert apply_now(held["id"]) == "held"
    captured = _answer(capture(client, alice, held["id"], "4.00"))
    assert _created_event(captured["id"]) == captured
    assert audit_actions(captured["id"]) == ["transaction.requested.capture"]


def test_a_scheduled_transfer_sent_with_an_offset_is_announced_as_the_api_shows_it(client, make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    due = (datetime.now(UTC) + timedelta(days=1)).astimezone(timezone(timedelta(hours=2)))
    body = _answer(transfer(client, alice, a, b, "1.00", scheduled_for=due.isoformat()))
    assert body["status"] == "scheduled" and body["scheduled_for"].endswith("+00:00")
    assert _created_event(body["id"]) == body


def test_a_replay_writes_no_second_row_audit_row_or_event(client, make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    headers = {"Idempotency-Key": "once"}
    first = _answer(transfer(client, alice, a, b, "1.00", headers=headers))
    again = transfer(client, alice, a, b, "1.00", headers=headers)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json["id"] == first["id"]
    assert sql("SELECT count(*) FROM transactions WHERE created_by = :u", u=alice.id)[0][0] == 1
    assert audit_actions(first["id"]) == ["transaction.requested.transfer"]
    assert sql("SELECT count(*) FROM events WHERE data->>'id' = :id", id=first["id"])[0][0] == 1


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 2, 15, 33, 56, 123456, tzinfo=UTC),
        datetime(2026, 12, 2, 15, 33, 56, 120000, tzinfo=UTC),
        datetime(2026, 12, 2, 15, 33, 56, 5, tzinfo=UTC),
        datetime(2026, 12, 2, 15, 33, 56, 0, tzinfo=UTC),  # Python leaves the fraction out
        datetime(1999, 1, 1, 0, 0, 0, 0, tzinfo=UTC),
    ],
)
def test_the_sql_rendering_of_a_timestamp_is_pythons(moment):
    from sqlalchemy import DateTime

    with get_engine().connect() as connection:
        rendered = connection.execute(select(iso_sql(literal(moment, DateTime(timezone=True))))).scalar_one()
    assert rendered == moment.isoformat()
