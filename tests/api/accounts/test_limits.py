"""Outgoing limits at, just under and just over each edge: refused at request time
(422 `limit_exceeded`) when the data already shows it, and decided by the worker
(`failed` / `limit_exceeded`) when it only shows up at apply time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.fixtures.http import API, accepted, debit, error_code, set_limits, transfer
from tests.fixtures.ledger import apply_now, balance, transaction

EDGES = [("under", True), ("at", True), ("over", False)]

# Another day, inside the scheduling horizon (SCHEDULE_HORIZON_DAYS).
FUTURE_DAY = (datetime.now(UTC) + timedelta(days=30)).isoformat()


@pytest.fixture
def setup(client, make):
    finance, alice = make.user("finance"), make.user()
    source = make.account(alice, balance="1000.00")
    target = make.account(make.user())
    return finance, alice, source, target


# --- max per transaction ---------------------------------------------------------------

MAX_AMOUNTS = {"under": "99.99", "at": "100.00", "over": "100.01"}


@pytest.mark.parametrize(("edge", "allowed"), EDGES)
def test_max_per_transaction_at_request_time(client, setup, edge, allowed):
    finance, alice, source, target = setup
    assert set_limits(client, finance, source, max_per_transaction="100.00").status_code == 200
    response = transfer(client, alice, source, target, MAX_AMOUNTS[edge])
    if allowed:
        assert apply_now(accepted(response)) == "completed"
    else:
        assert response.status_code == 422
        assert error_code(response) == "limit_exceeded"
        assert response.json["error"]["details"]["limit"] == "max_per_transaction"
        assert balance(source) == "1000.00"


@pytest.mark.parametrize(("edge", "allowed"), EDGES)
def test_max_per_transaction_in_the_worker(client, setup, edge, allowed):
    finance, alice, source, target = setup
    tx = accepted(transfer(client, alice, source, target, MAX_AMOUNTS[edge]))
    set_limits(client, finance, source, max_per_transaction="100.00")  # lowered after acceptance
    assert apply_now(tx) == ("completed" if allowed else "failed")
    if not allowed:
        assert transaction(tx).failure_code == "limit_exceeded"
        assert balance(source) == "1000.00"


def test_max_per_transaction_applies_to_debits_too(client, setup):
    finance, alice, source, _ = setup
    set_limits(client, finance, source, max_per_transaction="50.00")
    assert error_code(debit(client, alice, source, "50.01")) == "limit_exceeded"
    assert apply_now(accepted(debit(client, alice, source, "50.00"))) == "completed"


# --- daily outgoing (completed + pending) ----------------------------------------------

DAILY_SECOND = {"under": "39.99", "at": "40.00", "over": "40.01"}


@pytest.mark.parametrize(("edge", "allowed"), EDGES)
def test_daily_limit_counts_completed_at_request_time(client, setup, edge, allowed):
    finance, alice, source, target = setup
    set_limits(client, finance, source, daily_outgoing_limit="100.00")
    assert apply_now(accepted(transfer(client, alice, source, target, "60.00"))) == "completed"
    response = transfer(client, alice, source, target, DAILY_SECOND[edge])
    if allowed:
        assert apply_now(accepted(response)) == "completed"
    else:
        assert response.status_code == 422
        assert error_code(response) == "limit_exceeded"
        assert response.json["error"]["details"] == {
            "limit": "daily_outgoing_limit",
            "limit_value": "100.00",
            "used": "60.00",
        }


@pytest.mark.parametrize(("edge", "allowed"), EDGES)
def test_daily_limit_counts_pending_at_request_time(client, setup, edge, allowed):
    finance, alice, source, target = setup
    set_limits(client, finance, source, daily_outgoing_limit="100.00")
    accepted(debit(client, alice, source, "60.00"))  # still pending
    response = transfer(client, alice, source, target, DAILY_SECOND[edge])
    if allowed:
        accepted(response)
    else:
        assert error_code(response) == "limit_exceeded"


@pytest.mark.parametrize(("edge", "allowed"), EDGES)
def test_daily_limit_in_the_worker(client, setup, edge, allowed):
    finance, alice, source, target = setup
    first = accepted(transfer(client, alice, source, target, "60.00"))
    second = accepted(transfer(client, alice, source, target, DAILY_SECOND[edge]))
    set_limits(client, finance, source, daily_outgoing_limit="100.00")  # set after acceptance
    assert apply_now(first) == "completed"
    assert apply_now(second) == ("completed" if allowed else "failed")
    if not allowed:
        assert transaction(second).failure_code == "limit_exceeded"
        assert "daily outgoing limit" in transaction(second).failure_message
        assert balance(source) == "940.00"


def test_failed_transfers_do_not_use_up_the_daily_limit(client, setup, make):
    finance, alice, source, target = setup
    set_limits(client, finance, source, daily_outgoing_limit="100.00", overdraft_limit="0")
    poor = make.account(alice, balance="10.00")
    set_limits(client, finance, poor, daily_outgoing_limit="100.00")
    big = accepted(transfer(client, alice, poor, target, "50.00"))
    assert apply_now(big) == "failed"
    assert transaction(big).failure_code == "insufficient_funds"
    assert apply_now(accepted(transfer(client, alice, poor, target, "10.00"))) == "completed"


def test_incoming_money_and_credits_are_not_limited(client, setup, make):
    finance, alice, source, target = setup
    set_limits(client, finance, target, daily_outgoing_limit="1.00", max_per_transaction="1.00")
    from tests.fixtures.http import credit

    assert apply_now(accepted(transfer(client, alice, source, target, "500.00"))) == "completed"
    assert apply_now(accepted(credit(client, finance, target, "500.00"))) == "completed"
    assert balance(target) == "1000.00"


# --- per-minute count ------------------------------------------------------------------

COUNTS = {"under": 2, "at": 3, "over": 4}  # the n-th transfer of the minute, with a limit of 3


@pytest.mark.parametrize(("edge", "allowed"), EDGES)
def test_per_minute_count_at_request_time(client, setup, edge, allowed):
    finance, alice, source, target = setup
    set_limits(client, finance, source, per_minute_outgoing_count=3)
    for _ in range(COUNTS[edge] - 1):
        accepted(transfer(client, alice, source, target, "1.00"))
    response = transfer(client, alice, source, target, "1.00")
    if allowed:
        accepted(response)
    else:
        assert response.status_code == 422
        assert error_code(response) == "limit_exceeded"
        assert response.json["error"]["details"]["limit"] == "per_minute_outgoing_count"


@pytest.mark.parametrize(("edge", "allowed"), EDGES)
def test_per_minute_count_in_the_worker(client, setup, edge, allowed):
    finance, alice, source, target = setup
    ids = [accepted(transfer(client, alice, source, target, "1.00")) for _ in range(COUNTS[edge])]
    set_limits(client, finance, source, per_minute_outgoing_count=3)
    statuses = [apply_now(tx) for tx in ids]
    assert statuses[:-1] == ["completed"] * (len(ids) - 1)
    assert statuses[-1] == ("completed" if allowed else "failed")
    if not allowed:
        assert transaction(ids[-1]).failure_code == "limit_exceeded"


def test_scheduled_transfers_are_checked_against_their_own_day(client, setup):
    finance, alice, source, target = setup
    set_limits(client, finance, source, daily_outgoing_limit="10.00", max_per_transaction="50.00")
    tomorrow = FUTURE_DAY
    assert transfer(client, alice, source, target, "10.00").status_code == 202
    later = transfer(client, alice, source, target, "10.00", scheduled_for=tomorrow)
    assert later.status_code == 202 and later.json["status"] == "scheduled"
    too_big = transfer(client, alice, source, target, "50.01", scheduled_for=tomorrow)
    assert error_code(too_big) == "limit_exceeded"


# --- configurable defaults, overridden per account --------------------------------------


@pytest.fixture
def defaults(app, monkeypatch):
    """Configured defaults, as LEDGERQ_DEFAULT_* would set them, for the API and the worker."""
    from decimal import Decimal

    import db.ledger.posting.engine

    settings = app.config["LEDGERQ_SETTINGS"].model_copy(
        update={
            "default_max_per_transaction": Decimal("500"),
            "default_daily_outgoing_limit": Decimal("100"),
            "default_per_minute_outgoing_count": 10,
        }
    )
    monkeypatch.setitem(app.config, "LEDGERQ_SETTINGS", settings)
    monkeypatch.setattr(db.ledger.posting.engine, "get_settings", lambda: settings)
    return settings


def test_defaults_apply_until_finance_overrides_them(client, setup, defaults):
    finance, alice, source, target = setup
    limits = client.get(f"{API}/accounts/{source}/limits", headers=alice.headers).json
    assert limits == {
        "account_id": str(source),
        "currency": "USD",
        "max_per_transaction": "500.00",
        "daily_outgoing_limit": "100.00",
        "per_minute_outgoing_count": 10,
        "overdraft_limit": "0.00",
        "overrides": [],
    }
    assert error_code(transfer(client, alice, source, target, "100.01")) == "limit_exceeded"
    first = accepted(transfer(client, alice, source, target, "100.00"))

    raised = set_limits(client, finance, source, daily_outgoing_limit="300.00")
    assert raised.json["daily_outgoing_limit"] == "300.00"
    assert raised.json["overrides"] == ["daily_outgoing_limit"]
    second = accepted(transfer(client, alice, source, target, "200.00"))
    assert [apply_now(first), apply_now(second)] == ["completed", "completed"]

    reset = set_limits(client, finance, source, daily_outgoing_limit=None)
    assert reset.json["daily_outgoing_limit"] == "100.00" and reset.json["overrides"] == []
    third = accepted(transfer(client, alice, source, target, "1.00", scheduled_for=FUTURE_DAY))

    # Released today, the worker refuses it: 300.00 already went out under the default of 100.
    from sqlalchemy import update

    from db.models import Transaction
    from db.session import unit_of_work

    with unit_of_work() as uow:
        uow.session.execute(update(Transaction).where(Transaction.id == third).values(status="pending"))
    assert apply_now(third) == "failed"
    assert transaction(third).failure_code == "limit_exceeded"


def test_defaults_are_in_the_currency_of_the_account(client, make, defaults):
    alice = make.user()
    jpy = make.account(alice, "JPY")
    limits = client.get(f"{API}/accounts/{jpy}/limits", headers=alice.headers).json
    assert limits["max_per_transaction"] == "500"
    assert limits["daily_outgoing_limit"] == "100"


# --- the limits API ---------------------------------------------------------------------


def test_put_replaces_and_patch_merges(client, setup):
    finance, _, source, _ = setup
    put = set_limits(client, finance, source, "put", max_per_transaction="10.00", per_minute_outgoing_count=5)
    assert put.status_code == 200
    assert put.json["overrides"] == ["max_per_transaction", "per_minute_outgoing_count"]
    patched = set_limits(client, finance, source, daily_outgoing_limit="20.00")
    assert patched.json["max_per_transaction"] == "10.00"
    assert patched.json["daily_outgoing_limit"] == "20.00"
    replaced = set_limits(client, finance, source, "put", overdraft_limit="5.00")
    assert replaced.json["overrides"] == []
    assert replaced.json["max_per_transaction"] is None
    assert replaced.json["overdraft_limit"] == "5.00"


def test_limit_changes_are_audited(client, setup):
    from sqlalchemy import select

    from db.models import AuditLog
    from db.session import unit_of_work

    finance, _, source, _ = setup
    set_limits(client, finance, source, daily_outgoing_limit="20.00")
    with unit_of_work() as uow:
        row = uow.session.scalars(
            select(AuditLog).where(
                AuditLog.action == "account.limits_changed", AuditLog.entity_id == str(source)
            )
        ).one()
        assert row.actor_id == finance.id
        assert row.data["before"]["daily_outgoing_limit_minor"] is None
        assert row.data["after"]["daily_outgoing_limit_minor"] == 2000


@pytest.mark.parametrize(
    "body",
    [
        {"max_per_transaction": "10.005"},
        {"max_per_transaction": "0"},
        {"max_per_transaction": 10},
        {"daily_outgoing_limit": "-1.00"},
        {"per_minute_outgoing_count": 0},
        {"per_minute_outgoing_count": "5"},
        {"overdraft_limit": "1.001"},
        {"overdraft_limit": "-5"},
        {"max_per_transaction": "2000000000.00"},  # above LEDGERQ_MAX_AMOUNT
        {"unknown": "1"},
    ],
)
def test_invalid_limits_are_422(client, setup, body):
    finance, _, source, _ = setup
    response = set_limits(client, finance, source, **body)
    assert response.status_code == 422, response.json
    assert error_code(response) == "validation_error"


def test_customers_may_read_but_not_set_their_limits(client, setup, make):
    _, alice, source, _ = setup
    assert client.get(f"{API}/accounts/{source}/limits", headers=alice.headers).status_code == 200
    assert set_limits(client, alice, source, max_per_transaction="1.00").status_code == 403
    stranger = make.user()
    assert client.get(f"{API}/accounts/{source}/limits", headers=stranger.headers).status_code == 404


def test_system_accounts_have_no_limits(client, setup):
    finance, *_ = setup
    system = client.get(f"{API}/accounts?kind=system", headers=finance.headers).json["items"][0]
    limits = client.get(f"{API}/accounts/{system['id']}/limits", headers=finance.headers).json
    assert limits["overdraft_limit"] is None and limits["daily_outgoing_limit"] is None
    assert set_limits(client, finance, system["id"], overdraft_limit="1.00").status_code == 409
