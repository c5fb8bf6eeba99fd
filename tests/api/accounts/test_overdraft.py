"""Overdrafts: a balance may go down to -overdraft_limit and no further; the system
accounts are unlimited."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import exc, update

from db.models import Balance
from tests.fixtures.http import API, accepted, credit, debit, error_code, set_limits, transfer
from tests.fixtures.ledger import apply_now, balance, transaction


@pytest.mark.parametrize(
    ("amount", "status", "after"),
    [("49.99", "completed", "-49.99"), ("50.00", "completed", "-50.00"), ("50.01", "failed", "0.00")],
)
def test_a_transfer_may_take_the_balance_down_to_minus_the_overdraft_limit(
    client, make, amount, status, after
):
    finance, alice = make.user("finance"), make.user()
    source, target = make.account(alice), make.account(make.user())
    limits = set_limits(client, finance, source, overdraft_limit="50.00")
    assert limits.status_code == 200 and limits.json["overdraft_limit"] == "50.00"

    tx = accepted(transfer(client, alice, source, target, amount))
    assert apply_now(tx) == status
    assert balance(source) == after
    if status == "failed":
        assert transaction(tx).failure_code == "insufficient_funds"
    account = client.get(f"{API}/accounts/{source}", headers=alice.headers).json
    assert account["overdraft_limit"] == "50.00"
    assert account["balance"] == after


def test_no_overdraft_by_default(client, make):
    alice = make.user()
    source = make.account(alice, balance="10.00")
    exact, over = (
        accepted(debit(client, alice, source, "10.00")),
        accepted(debit(client, alice, source, "0.01")),
    )
    assert [apply_now(exact), apply_now(over)] == ["completed", "failed"]
    assert transaction(over).failure_code == "insufficient_funds"
    assert balance(source) == "0.00"


def test_available_balance_subtracts_pending_outgoing(client, make):
    finance, alice = make.user("finance"), make.user()
    source = make.account(alice, balance="10.00")
    set_limits(client, finance, source, overdraft_limit="5.00")
    accepted(debit(client, alice, source, "12.00"))
    account = client.get(f"{API}/accounts/{source}", headers=alice.headers).json
    assert (account["balance"], account["available_balance"]) == ("10.00", "-2.00")


def test_the_overdraft_cannot_be_lowered_below_the_current_balance(client, make):
    finance, alice = make.user("finance"), make.user()
    source = make.account(alice)
    set_limits(client, finance, source, overdraft_limit="50.00")
    assert apply_now(accepted(debit(client, alice, source, "30.00"))) == "completed"

    too_low = set_limits(client, finance, source, overdraft_limit="29.99")
    assert too_low.status_code == 409
    assert error_code(too_low) == "conflict"
    assert too_low.json["error"]["details"] == {"balance": "-30.00", "overdraft_limit": "29.99"}
    assert set_limits(client, finance, source, overdraft_limit="30.00").status_code == 200
    # Back above zero, the overdraft can be removed altogether.
    assert apply_now(accepted(credit(client, finance, source, "30.00"))) == "completed"
    assert set_limits(client, finance, source, overdraft_limit=None).json["overdraft_limit"] == "0.00"


def test_the_database_refuses_a_balance_below_the_floor(make):
    """The worker decides first, but the CHECK constraint is the last word."""
    from db.session import unit_of_work

    account = make.account(make.user())
    with pytest.raises(exc.IntegrityError, match="ck_balances_within_overdraft"), unit_of_work() as uow:
        uow.session.execute(
            update(Balance).where(Balance.account_id == uuid.UUID(str(account))).values(balance_minor=-1)
        )


def test_system_accounts_are_unlimited(client, make):
    finance = make.user("finance")
    account = make.account(make.user())
    big = "1000000000.00"  # LEDGERQ_MAX_AMOUNT
    for _ in range(2):
        assert apply_now(accepted(credit(client, finance, account, big))) == "completed"
    system = client.get(f"{API}/accounts?kind=system&currency=USD", headers=finance.headers).json["items"][0]
    assert system["balance"] == "-2000000000.00"
    assert balance(account) == "2000000000.00"


def test_a_lowered_overdraft_leaves_a_sound_ledger(client, make):
    """`ledgerq verify` must not mistake a past overdraft for corruption."""
    from db.ledger.verify import verify_ledger
    from db.session import unit_of_work

    finance, alice = make.user("finance"), make.user()
    source = make.account(alice)
    set_limits(client, finance, source, overdraft_limit="50.00")
    assert apply_now(accepted(debit(client, alice, source, "40.00"))) == "completed"
    assert apply_now(accepted(credit(client, finance, source, "40.00"))) == "completed"
    assert set_limits(client, finance, source, overdraft_limit="0").status_code == 200
    with unit_of_work() as uow:
        assert verify_ledger(uow.session) == []


@pytest.mark.parametrize("method", ["patch", "put"])
def test_an_overdraft_above_the_configured_cap_is_refused(make, method):
    """`"9999999999999999.00"` was granted: every grant is now capped by
    LEDGERQ_MAX_OVERDRAFT (major units of the account's currency)."""
    from tests.fixtures.http import app_with

    client = app_with(max_overdraft=Decimal("5000")).test_client()
    finance, alice = make.user("finance"), make.user()
    source = make.account(alice)
    for amount in ("9999999999999999.00", "5000.01"):
        refused = set_limits(client, finance, source, method, overdraft_limit=amount)
        assert refused.status_code == 422 and error_code(refused) == "overdraft_cap_exceeded", refused.json
        assert refused.json["error"]["details"] == {"overdraft_limit": amount, "max_overdraft": "5000.00"}
    assert client.get(f"{API}/accounts/{source}", headers=alice.headers).json["overdraft_limit"] == "0.00"
    assert set_limits(client, finance, source, method, overdraft_limit="5000.00").status_code == 200


def test_the_cap_and_its_code_are_in_the_openapi_description(client):
    limits = client.get("/api/v1/openapi.json").json["paths"]["/api/v1/accounts/{account_id}/limits"]
    for method in ("put", "patch"):
        assert "overdraft_cap_exceeded" in limits[method]["responses"]["422"]["description"]
