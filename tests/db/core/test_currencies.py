"""The exponent table: which amounts each currency accepts, and how it renders them."""

from __future__ import annotations

import re

import pytest

from db.core.currencies import CURRENCY_EXPONENTS, exponent, is_known_currency
from db.core.money import AmountError, format_minor, parse_amount

# (currency, exponent, valid amount -> minor units, rendering)
VALID = [
    ("JPY", "500", 500, "500"),
    ("JPY", "1", 1, "1"),
    ("KRW", "1000", 1000, "1000"),
    ("USD", "10", 1000, "10.00"),
    ("USD", "10.5", 1050, "10.50"),
    ("USD", "0.01", 1, "0.01"),
    ("EUR", "150.75", 15075, "150.75"),
    ("BHD", "1.5", 1500, "1.500"),
    ("BHD", "0.001", 1, "0.001"),
    ("KWD", "12.345", 12345, "12.345"),
    ("JOD", "7", 7000, "7.000"),
    ("CLF", "0.0001", 1, "0.0001"),
    ("CLF", "2.5", 25000, "2.5000"),
    ("UYW", "1.2345", 12345, "1.2345"),
]

# (currency, amount that must be refused, never rounded)
INVALID = [
    ("JPY", "1.5"),
    ("JPY", "1.0"),
    ("USD", "10.005"),
    ("USD", "0.001"),
    ("EUR", "1.999"),
    ("BHD", "1.0005"),
    ("KWD", "0.0001"),
    ("CLF", "1.00001"),
    ("USD", "0"),
    ("USD", "0.00"),
    ("JPY", "0"),
    ("USD", "-1.00"),
    ("USD", "+1.00"),
    ("USD", "1e3"),
    ("USD", " 1.00"),
    ("USD", "1,000.00"),
    ("USD", ".50"),
    ("USD", "1."),
    ("USD", "01.00"),
    ("USD", ""),
    ("USD", "9" * 17),  # more digits than BIGINT minor units can safely hold
]


@pytest.mark.parametrize(("currency", "text", "minor", "rendered"), VALID)
def test_valid_amount_is_stored_exactly_and_rendered_with_the_currency_decimals(
    currency, text, minor, rendered
):
    assert parse_amount(text, currency) == minor
    assert format_minor(minor, currency) == rendered


@pytest.mark.parametrize(("currency", "text"), INVALID)
def test_invalid_amount_is_refused(currency, text):
    with pytest.raises(AmountError):
        parse_amount(text, currency)


@pytest.mark.parametrize("number", [10, 10.5, None, True])
def test_json_numbers_are_refused(number):
    with pytest.raises(AmountError, match="string"):
        parse_amount(number, "USD")


def test_amount_over_the_configured_maximum_is_refused_at_the_edge():
    from decimal import Decimal

    assert parse_amount("100.00", "USD", max_amount=Decimal("100")) == 10000
    with pytest.raises(AmountError, match="exceed"):
        parse_amount("100.01", "USD", max_amount=Decimal("100"))


def test_zero_only_where_allowed():
    assert parse_amount("0", "USD", allow_zero=True) == 0
    assert parse_amount("0.00", "BHD", allow_zero=True) == 0


def test_negative_amounts_render_with_the_currency_decimals():
    assert format_minor(-5, "USD") == "-0.05"
    assert format_minor(-1500, "BHD") == "-1.500"
    assert format_minor(-500, "JPY") == "-500"


@pytest.mark.parametrize(
    ("code", "places"),
    [("JPY", 0), ("KRW", 0), ("ISK", 0), ("VND", 0), ("XOF", 0), ("USD", 2), ("EUR", 2), ("GBP", 2)]
    + [("BHD", 3), ("KWD", 3), ("OMR", 3), ("TND", 3), ("IQD", 3), ("LYD", 3), ("JOD", 3)]
    + [("CLF", 4), ("UYW", 4), ("XCG", 2), ("ZWG", 2), ("SLE", 2), ("VED", 2)],
)
def test_registry_exponents(code, places):
    assert exponent(code) == places


@pytest.mark.parametrize(
    "code",
    # withdrawn (HRK 2023, SLL, ZWL 2024, CUC, ANG 2025, BGN 2026), unknown, wrong case,
    # and codes without a minor unit (metals, SDR, test)
    ["HRK", "SLL", "ZWL", "CUC", "ANG", "BGN", "VEF", "XYZ", "usd", "XAU", "XDR", "XTS", "XXX"],
)
def test_unknown_or_withdrawn_codes_are_not_currencies(code):
    assert not is_known_currency(code)
    with pytest.raises(KeyError):
        exponent(code)


def test_registry_is_well_formed():
    assert len(CURRENCY_EXPONENTS) > 150
    for code, places in CURRENCY_EXPONENTS.items():
        assert re.fullmatch(r"[A-Z]{3}", code), code
        assert places in (0, 2, 3, 4), code


@pytest.mark.parametrize(
    "text",
    ["3.00\n", "3\n", "3.00\r\n", "3.00 ", " 3.00", "３.00", "3.0０", "١٢", "3e2", "-0", "-0.00", "+3"],
)
def test_trailing_newlines_spaces_and_non_ascii_digits_are_refused(text):
    """`$` matched before a trailing newline, so "3.00\\n" was accepted as 3.00; and
    `[0-9]` is ASCII, but int() would read Unicode digits, so keep both strict."""
    with pytest.raises(AmountError):
        parse_amount(text, "USD")
