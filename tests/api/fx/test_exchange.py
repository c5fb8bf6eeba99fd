"""POST /transactions/exchange: figures fixed at request time, the stale-quote refusal,
the worker's atomic posting through the fx and fees accounts, and the reversal."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from db.core.money import format_minor
from db.session import get_engine
from tests.fixtures.fx import currency_sums, exchange, set_rate, system_account
from tests.fixtures.http import accepted, assert_error
from tests.fixtures.ledger import (
    apply_now,
    audit_events,
    balance,
    entries_of,
    ledger_problems,
    sql,
    transaction,
)

API = "/api/v1"


@pytest.fixture
def world(make, client):
    finance, alice = make.user("finance"), make.user()
    return {"finance": finance, "alice": alice}


# (from, to, rate, fee_bps, amount) -> (fee, to_amount): every exponent pair, each step
# rounded toward zero. JPY 0, USD 2, KWD 3, CLF 4.
CASES = [
    ("USD", "JPY", "151.237", 25, "100.00", "0.25", "15085"),  # 99.75 x 151.237 = 15085.89.. -> 15085
    ("JPY", "USD", "0.00661213", 30, "10000", "30", "65.92"),  # 9970 x 0.00661213 = 65.9229.. -> 65.92
    ("USD", "KWD", "0.30712", 15, "10.01", "0.01", "3.071"),  # fee 0.015015 -> 0.01; 10.00 x .30712 = 3.0712
    ("KWD", "USD", "3.2561", 10, "1.999", "0.001", "6.50"),  # fee .001999 -> .001; 1.998 x 3.2561 = 6.5056..
    ("JPY", "KWD", "0.00203", 0, "999", "0", "2.027"),  # 999 x 0.00203 = 2.02797 -> 2.027
    ("KWD", "JPY", "491.9", 99, "0.125", "0.001", "60"),  # 0.124 x 491.9 = 60.9956 -> 60
    (
        "CLF",
        "USD",
        "38.945",
        50,
        "1.2345",
        "0.0061",
        "47.84",
    ),  # fee .0061725 -> .0061; 1.2284 x 38.945 = 47.840038
    ("USD", "CLF", "0.025677", 20, "50.00", "0.10", "1.2812"),  # 49.90 x .025677 = 1.2812823 -> 1.2812
    ("CLF", "JPY", "5890.5", 5, "0.0100", "0.0000", "58"),  # 0.01 x 5890.5 = 58.905 -> 58
    ("JPY", "CLF", "0.00016977", 1, "12345", "1", "2.0956"),  # 12344 x 0.00016977 = 2.09564.. -> 2.0956
    ("CLF", "KWD", "11.9611", 7, "3.0000", "0.0021", "35.858"),  # 2.9979 x 11.9611 = 35.85818.. -> 35.858
    ("KWD", "CLF", "0.083604", 3, "7.777", "0.002", "0.6500"),  # 7.775 x .083604 = 0.65002.. -> 0.6500
]


def _expected_fee_and_to(from_c, to_c, rate, fee_bps, amount):
    """The contract's formula in Decimal with a context large enough to be exact."""
    from decimal import ROUND_DOWN, Decimal, localcontext

    from db.core.currencies import exponent

    with localcontext() as ctx:
        ctx.prec = 100
        amt = Decimal(amount)
        fee = (amt * fee_bps / 10000).quantize(Decimal(1).scaleb(-exponent(from_c)), rounding=ROUND_DOWN)
        to = ((amt - fee) * Decimal(rate)).quantize(Decimal(1).scaleb(-exponent(to_c)), rounding=ROUND_DOWN)
    return fee, to


@pytest.mark.parametrize(("from_c", "to_c", "rate", "fee_bps", "amount", "fee", "to_amount"), CASES)
def test_exchange_at_every_exponent_pair_rounds_toward_zero_and_posts_each_currency_to_zero(
    client, make, world, from_c, to_c, rate, fee_bps, amount, fee, to_amount
):
    finance, alice = world["finance"], world["alice"]
    expected_fee, expected_to = _expected_fee_and_to(from_c, to_c, rate, fee_bps, amount)
    assert (str(expected_fee), str(expected_to)) == (fee, to_amount)
    source = make.account(alice, currency=from_c, balance=amount)
    target = make.account(alice, currency=to_c)
    assert set_rate(client, finance, from_c, to_c, rate, fee_bps).status_code == 200

    response = exchange(client, alice, source, target, amount, from_c)
    tx_id = accepted(response)
    body = response.json
    assert (body["type"], body["status"], body["currency"], body["to_currency"]) == (
        "exchange",
        "pending",
        from_c,
        to_c,
    )
    assert (body["fee"], body["to_amount"]) == (str(expected_fee), str(expected_to))
    assert body["rate"] == rate

    assert apply_now(tx_id) == "completed"
    assert balance(source) == format_minor(0, from_c)
    assert balance(target) == str(expected_to)
    assert balance(system_account(from_c, "fees")) == str(expected_fee)
    entries = dict(entries_of(tx_id))
    assert len(entries) == (5 if expected_fee else 4)
    assert all(total == 0 for total in currency_sums().values())
    assert ledger_problems() == []


def test_the_fee_is_refused_below_one_minor_unit_and_a_zero_to_amount_is_422(client, make, world):
    finance, alice = world["finance"], world["alice"]
    source = make.account(alice, currency="USD", balance="1.00")
    target = make.account(alice, currency="JPY")
    set_rate(client, finance, "USD", "JPY", "0.5", 0)
    body = assert_error(exchange(client, alice, source, target, "0.01", "USD"), 422, "validation_error")
    assert "amount" in body["details"]
    assert sql("SELECT count(*) FROM transactions WHERE type = 'exchange'")[0][0] == 0


def test_a_stale_quote_is_409_rate_changed_and_records_nothing(client, make, world):
    finance, alice = world["finance"], world["alice"]
    source = make.account(alice, currency="USD", balance="10.00")
    target = make.account(alice, currency="EUR")
    set_rate(client, finance, "USD", "EUR", "0.9200", 10)
    quoted = client.get(f"{API}/fx/rates/USD/EUR", headers=alice.headers).json["rate"]
    assert quoted == "0.92"
    set_rate(client, finance, "USD", "EUR", "0.9215", 10)

    body = assert_error(
        exchange(client, alice, source, target, "5.00", "USD", rate=quoted), 409, "rate_changed"
    )
    assert body["details"]["rate"] == "0.9215"
    assert sql("SELECT count(*) FROM transactions WHERE type = 'exchange'")[0][0] == 0
    # The current one, in any spelling, is accepted.
    tx_id = accepted(exchange(client, alice, source, target, "5.00", "USD", rate="0.921500"))
    assert transaction(tx_id).fx_rate_version_id == sql("SELECT max(id) FROM fx_rate_versions")[0][0]


def test_the_worker_applies_the_figures_fixed_at_request_time(client, make, world):
    finance, alice = world["finance"], world["alice"]
    source = make.account(alice, currency="USD", balance="10.00")
    target = make.account(alice, currency="EUR")
    set_rate(client, finance, "USD", "EUR", "0.5")
    tx_id = accepted(exchange(client, alice, source, target, "10.00", "USD"))
    set_rate(client, finance, "USD", "EUR", "2")  # after the request: does not apply to it
    assert apply_now(tx_id) == "completed"
    assert balance(target) == "5.00"


def test_no_rate_for_the_pair_and_a_same_currency_target_are_refused(client, make, world):
    finance, alice = world["finance"], world["alice"]
    usd, eur, usd2 = (make.account(alice, currency=c, balance=None) for c in ("USD", "EUR", "USD"))
    assert (
        "to_account_id"
        in assert_error(exchange(client, alice, usd, eur, "1.00", "USD"), 422, "validation_error")["details"]
    )
    set_rate(client, finance, "EUR", "USD", "1.08")  # the other direction is another pair
    assert_error(exchange(client, alice, usd, eur, "1.00", "USD"), 422, "validation_error")
    assert_error(exchange(client, alice, usd, usd2, "1.00", "USD"), 422, "currency_mismatch")
    assert_error(exchange(client, alice, usd, eur, "1.00", "EUR"), 422, "currency_mismatch")


@pytest.mark.parametrize("rate", [1.5, "1e2", "-1", "0", "0.000", "1.2345678901234", " 1", "NaN", "1,5"])
def test_hostile_client_rates_are_422(client, make, world, rate):
    finance, alice = world["finance"], world["alice"]
    source, target = make.account(alice, currency="USD", balance="1.00"), make.account(alice, currency="EUR")
    set_rate(client, finance, "USD", "EUR", "1.5")
    assert_error(exchange(client, alice, source, target, "1.00", "USD", rate=rate), 422, "validation_error")


def test_only_the_source_owner_or_finance_may_exchange(client, make, world):
    finance, alice, mallory = world["finance"], world["alice"], make.user()
    source, target = make.account(alice, currency="USD", balance="1.00"), make.account(alice, currency="EUR")
    set_rate(client, finance, "USD", "EUR", "1.5")
    assert_error(exchange(client, mallory, source, target, "1.00", "USD"), 404, "not_found")
    accepted(exchange(client, finance, source, target, "1.00", "USD"))


def test_insufficient_funds_and_a_frozen_target_fail_at_the_worker_and_move_nothing(client, make, world):
    finance, alice = world["finance"], world["alice"]
    source, target = make.account(alice, currency="USD", balance="1.00"), make.account(alice, currency="EUR")
    set_rate(client, finance, "USD", "EUR", "1.5", 100)
    poor = accepted(exchange(client, alice, source, target, "1.00", "USD"))
    rich = accepted(exchange(client, alice, source, target, "1.00", "USD"))
    assert apply_now(poor) == "completed"
    assert apply_now(rich) == "failed"
    assert transaction(rich).failure_code == "insufficient_funds"
    assert entries_of(rich) == []

    make.fund(source, "1.00")
    frozen = accepted(exchange(client, alice, source, target, "1.00", "USD"))
    client.post(f"{API}/accounts/{target}/freeze", json={}, headers=finance.headers)
    assert apply_now(frozen) == "failed"
    assert transaction(frozen).failure_code == "account_inactive"
    assert ledger_problems() == []


def test_limits_apply_to_the_source_amount(client, make, world):
    finance, alice = world["finance"], world["alice"]
    source, target = (
        make.account(alice, currency="USD", balance="100.00"),
        make.account(alice, currency="EUR"),
    )
    set_rate(client, finance, "USD", "EUR", "0.9")
    client.patch(
        f"{API}/accounts/{source}/limits", json={"max_per_transaction": "10.00"}, headers=finance.headers
    )
    assert_error(exchange(client, alice, source, target, "10.01", "USD"), 422, "limit_exceeded")
    accepted(exchange(client, alice, source, target, "10.00", "USD"))


def test_an_idempotent_retry_replays_the_original_figures(client, make, world):
    finance, alice = world["finance"], world["alice"]
    source, target = make.account(alice, currency="USD", balance="10.00"), make.account(alice, currency="EUR")
    set_rate(client, finance, "USD", "EUR", "0.9")
    first = exchange(client, alice, source, target, "5.00", "USD", headers={"Idempotency-Key": "k-1"})
    set_rate(client, finance, "USD", "EUR", "0.8")
    again = exchange(client, alice, source, target, "5.00", "USD", headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert (again.json["id"], again.json["to_amount"]) == (first.json["id"], "4.50")
    other = exchange(
        client, alice, source, target, "5.00", "USD", rate="0.8", headers={"Idempotency-Key": "k-1"}
    )
    assert_error(other, 422, "idempotency_key_reused")


def test_reversing_an_exchange_moves_the_same_amounts_back_with_the_fee(client, make, world):
    finance, alice = world["finance"], world["alice"]
    source, target = (
        make.account(alice, currency="USD", balance="100.00"),
        make.account(alice, currency="JPY"),
    )
    set_rate(client, finance, "USD", "JPY", "150.5", 100)  # 1 %
    tx_id = accepted(exchange(client, alice, source, target, "100.00", "USD"))
    assert apply_now(tx_id) == "completed"
    assert (balance(source), balance(target), balance(system_account("USD", "fees"))) == (
        "0.00",
        "14899",
        "1.00",
    )
    set_rate(client, finance, "USD", "JPY", "10")  # the reversal ignores today's rate

    response = client.post(f"{API}/transactions/{tx_id}/reverse", headers=finance.headers)
    reversal = accepted(response)
    assert (response.json["amount"], response.json["currency"]) == ("14899", "JPY")
    assert (response.json["to_amount"], response.json["to_currency"], response.json["fee"]) == (
        "100.00",
        "USD",
        "1.00",
    )
    assert response.json["rate"] == "150.5"
    assert apply_now(reversal) == "completed"
    assert (balance(source), balance(target), balance(system_account("USD", "fees"))) == (
        "100.00",
        "0",
        "0.00",
    )
    assert balance(system_account("USD", "fx")) == "0.00" and balance(system_account("JPY", "fx")) == "0"
    assert sorted(amount for _, amount in entries_of(reversal)) == sorted(-a for _, a in entries_of(tx_id))
    assert ledger_problems() == []
    assert client.get(f"{API}/transactions/{tx_id}", headers=alice.headers).json["reversed_by"] == reversal
    actions = [action for action, _ in audit_events(reversal)]
    assert "transaction.requested.reversal" in actions


def test_verify_catches_an_exchange_whose_entries_were_tampered_with(client, make, world):
    finance, alice = world["finance"], world["alice"]
    source, target = make.account(alice, currency="USD", balance="10.00"), make.account(alice, currency="EUR")
    set_rate(client, finance, "USD", "EUR", "0.9", 100)
    tx_id = accepted(exchange(client, alice, source, target, "10.00", "USD"))
    assert apply_now(tx_id) == "completed"
    assert ledger_problems() == []
    # Behind the database's guard: the fee moved to fx instead, the sums still zero.
    with get_engine().begin() as connection:
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        for account, delta in ((system_account("USD", "fx"), 5), (system_account("USD", "fees"), -5)):
            connection.execute(
                text(
                    "UPDATE ledger_entries SET amount_minor = amount_minor + :d "
                    "WHERE transaction_id = :t AND account_id = :a"
                ),
                {"d": delta, "t": tx_id, "a": account},
            )
    problems = ledger_problems()
    assert any(p.startswith("exchange_entries:") and tx_id in p for p in problems), problems
