"""Currencies through the API: unknown codes, per-currency decimals, cross-currency."""

from __future__ import annotations

import pytest

from tests.fixtures.http import API, accepted, credit, error_code, transfer
from tests.fixtures.ledger import apply_now


@pytest.mark.parametrize("code", ["XYZ", "HRK", "usd", "US", "XAU"])
def test_opening_an_account_in_an_unknown_currency_is_422(client, make, code):
    alice = make.user()
    response = client.post(f"{API}/accounts", json={"currency": code}, headers=alice.headers)
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert "currency" in response.json["error"]["details"]


@pytest.mark.parametrize("endpoint", ["transfer", "debit", "credit"])
def test_a_transaction_in_an_unknown_currency_is_422(client, make, endpoint):
    alice, finance = make.user(), make.user("finance")
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    body = {"amount": "1.00", "currency": "XYZ"}
    if endpoint == "transfer":
        body |= {"from_account_id": str(a), "to_account_id": str(b)}
    else:
        body |= {"account_id": str(a)}
    user = finance if endpoint == "credit" else alice
    response = client.post(f"{API}/transactions/{endpoint}", json=body, headers=user.headers)
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert "currency" in response.json["error"]["details"]


@pytest.mark.parametrize(
    ("currency", "amount", "rendered"),
    [("JPY", "500", "500"), ("USD", "10", "10.00"), ("BHD", "1.5", "1.500"), ("KWD", "0.001", "0.001")]
    + [("CLF", "0.0001", "0.0001")],
)
def test_amounts_render_with_exactly_the_currency_decimals(client, make, currency, amount, rendered):
    alice, finance = make.user(), make.user("finance")
    account = client.post(f"{API}/accounts", json={"currency": currency}, headers=alice.headers).json
    assert account["balance"] == format_zero(currency)
    tx = credit(client, finance, account["id"], amount, currency)
    assert tx.json["amount"] == rendered
    assert apply_now(accepted(tx)) == "completed"
    after = client.get(f"{API}/accounts/{account['id']}", headers=alice.headers).json
    assert after["balance"] == rendered
    assert after["available_balance"] == rendered


def format_zero(currency):
    from db.core.money import format_minor

    return format_minor(0, currency)


@pytest.mark.parametrize(
    ("currency", "amount"),
    [("JPY", "1.5"), ("USD", "10.005"), ("BHD", "1.0005"), ("KWD", "0.0001"), ("CLF", "1.00001")]
    + [("USD", "0"), ("USD", "-5.00")],
)
def test_more_decimals_than_the_currency_has_is_422_never_rounded(client, make, currency, amount):
    finance = make.user("finance")
    account = make.account(make.user(), currency=currency)
    response = credit(client, finance, account, amount, currency)
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert "amount" in response.json["error"]["details"]


def test_amount_as_json_number_is_422(client, make):
    alice = make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    body = {"from_account_id": str(a), "to_account_id": str(b), "amount": 1.5, "currency": "USD"}
    response = client.post(f"{API}/transactions/transfer", json=body, headers=alice.headers)
    assert response.status_code == 422
    assert "amount" in response.json["error"]["details"]


def test_transfer_between_accounts_of_different_currencies_is_currency_mismatch(client, make):
    alice = make.user()
    usd = make.account(alice, "USD", balance="10.00")
    eur = make.account(make.user(), "EUR")
    for currency in ("USD", "EUR"):
        response = transfer(client, alice, usd, eur, "1.00", currency)
        assert response.status_code == 422
        assert error_code(response) == "currency_mismatch"


def test_transaction_currency_must_match_the_accounts(client, make):
    alice = make.user()
    a, b = make.account(alice, "USD", balance="10.00"), make.account(make.user(), "USD")
    response = transfer(client, alice, a, b, "1.00", "EUR")
    assert response.status_code == 422
    assert error_code(response) == "currency_mismatch"
