"""The rate format and the exchange arithmetic, exact, without the database."""

from __future__ import annotations

from decimal import Decimal

import pytest

from db.fx.rates import RateError, exchange_figures, parse_rate, render_rate


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", "1"),
        ("1.50", "1.5"),
        ("0.000000000000000001", "0.000000000000000001"),
        ("123456789012", "123456789012"),
        ("1234.56789012", "1234.56789012"),
        ("0.00123456789012", "0.00123456789012"),
        ("1.0000000000000000000000000", "1"),  # trailing zeros are not significant
        ("150.000", "150"),
    ],
)
def test_valid_rates_parse_exactly_and_render_without_insignificant_zeros(text, value):
    assert render_rate(parse_rate(text)) == value
    assert parse_rate(text) == Decimal(value)


@pytest.mark.parametrize(
    "text",
    [
        1.5,
        1,
        None,
        "",
        "0",
        "0.000",
        "-1",
        "+1",
        "1e3",
        "1E-2",
        " 1",
        "1 ",
        "1.",
        ".5",
        "01.5",
        "NaN",
        "Infinity",
        "1,5",
        "١٢",
        "1234567890123",  # 13 significant digits
        "1.23456789012 3",
        "1.234567890123",  # 13 significant digits
        "0.0000000000000000001",  # 19 decimals
        "1000000000000",  # 10^12: 13 integer digits
        "9" * 100,
    ],
)
def test_hostile_or_oversized_rates_are_refused(text):
    with pytest.raises(RateError):
        parse_rate(text)


def test_twelve_significant_digits_are_the_limit():
    assert render_rate(parse_rate("9.99999999999")) == "9.99999999999"  # 12
    with pytest.raises(RateError, match="12 significant"):
        parse_rate("9.999999999999")  # 13


@pytest.mark.parametrize(
    ("amount", "fee_bps", "rate", "from_c", "to_c", "fee", "to_amount"),
    [
        (1, 9999, "1", "USD", "EUR", 0, 1),  # the fee of one cent rounds to 0
        (10_000, 1, "1", "USD", "EUR", 1, 9_999),
        (9, 0, "0.001", "JPY", "USD", 0, 0),  # 0.009 USD -> 0
        (999, 0, "0.001", "JPY", "USD", 0, 99),  # 0.999 USD -> 0.99
        (1, 0, "1", "CLF", "JPY", 0, 0),  # 0.0001 CLF -> 0 JPY
        (1, 0, "1", "JPY", "CLF", 0, 10_000),  # 1 JPY -> 1.0000 CLF
        (123, 0, "0.000000000000000001", "JPY", "CLF", 0, 0),
        (10**18, 0, "123456789012", "JPY", "CLF", 0, 10**18 * 123456789012 * 10**4),
        (3, 3333, "3.33333333333", "KWD", "USD", 0, 0),  # 0.003 x 3.33.. = 0.0099.. USD -> 0
        (7, 5000, "1.5", "USD", "KWD", 3, 60),  # fee 3.5 -> 3; 0.04 x 1.5 = 0.060
    ],
)
def test_each_step_rounds_toward_zero_in_integers(amount, fee_bps, rate, from_c, to_c, fee, to_amount):
    figures = exchange_figures(
        amount, rate=parse_rate(rate), fee_bps=fee_bps, from_currency=from_c, to_currency=to_c
    )
    assert (figures.fee_minor, figures.to_amount_minor) == (fee, to_amount)
