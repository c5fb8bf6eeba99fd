"""Exchange rates and the exchange arithmetic, exact: a rate is a `Decimal` parsed from a
plain decimal string, and every figure is computed in integers of minor units, so no
context precision and no float is ever involved.

`fee = amount x fee_bps / 10000` and `to_amount = (amount - fee) x rate`, each rounded
toward zero to its currency's exponent (shared/API.md, "Exchange (FX)").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from db.core.currencies import exponent

MAX_SIGNIFICANT_DIGITS = 12
# NUMERIC(30, 18) holds them: below 10^12 and down to 10^-18.
MAX_INTEGER_DIGITS = 12
MAX_DECIMALS = 18
# Basis points of the exchanged amount: 0 up to 9999 (99.99 %); 10000 would take it all.
FEE_BPS_MAX = 9999
_RATE_RE = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?")
_MAX_TEXT = 64  # no rate needs more characters; a 1 MB string is refused before parsing


class RateError(ValueError):
    """A client-supplied rate that is not acceptable; the message says why."""


def _digits(value: Decimal) -> tuple[tuple[int, ...], int]:
    """(significant digits, exponent) of a positive `value`, leading and trailing zeros
    stripped, computed from its exact tuple (normalize() would round at 28 digits)."""
    _, digits, exp = value.as_tuple()
    assert isinstance(exp, int)
    ds = list(digits)
    while len(ds) > 1 and ds[-1] == 0:
        ds.pop()
        exp += 1
    while len(ds) > 1 and ds[0] == 0:
        ds.pop(0)
    return tuple(ds), exp


def canonical(value: Decimal) -> Decimal:
    """The value with no insignificant zeros: 1.500000 -> 1.5, so equal rates compare
    and render alike whether they came from the client or from NUMERIC(30, 18)."""
    digits, exp = _digits(value)
    return Decimal((0, digits, exp))


def parse_rate(text: object) -> Decimal:
    """A positive plain decimal string of at most 12 significant digits, at most 12
    integer digits and 18 decimals; anything else (a JSON number, an exponent, a sign,
    zero) is a RateError."""
    if not isinstance(text, str):
        raise RateError('must be a decimal string such as "1.0842", not a JSON number')
    if len(text) > _MAX_TEXT or not _RATE_RE.fullmatch(text):
        raise RateError("must be a plain decimal string: digits with an optional fraction")
    value = Decimal(text)
    if value <= 0:
        raise RateError("must be greater than zero")
    digits, exp = _digits(value)
    if len(digits) > MAX_SIGNIFICANT_DIGITS:
        raise RateError(f"must have at most {MAX_SIGNIFICANT_DIGITS} significant digits")
    if len(digits) + exp > MAX_INTEGER_DIGITS:
        raise RateError(f"must be below 10^{MAX_INTEGER_DIGITS}")
    if -exp > MAX_DECIMALS:
        raise RateError(f"must have at most {MAX_DECIMALS} decimal places")
    return Decimal((0, digits, exp))


def render_rate(value: Decimal) -> str:
    """The plain decimal string of a rate, without insignificant zeros ("1.5", "150")."""
    return format(canonical(value), "f")


@dataclass(frozen=True)
class Figures:
    """What an exchange of `amount_minor` moves: the fee (source currency) and what the
    target receives (target currency), both in minor units."""

    fee_minor: int
    to_amount_minor: int


def exchange_figures(
    amount_minor: int, *, rate: Decimal, fee_bps: int, from_currency: str, to_currency: str
) -> Figures:
    """fee = floor(amount x fee_bps / 10000) in the source's minor units; to_amount =
    floor((amount - fee) x rate), converted between the two exponents, in the target's.
    Every operand is a non-negative integer, so floor division is rounding toward zero."""
    fee_minor = amount_minor * fee_bps // 10_000
    net_minor = amount_minor - fee_minor
    digits, exp = _digits(rate)
    mantissa = int("".join(map(str, digits)))
    # net_minor x 10^-e(from) major units x mantissa x 10^exp, in 10^-e(to) units:
    shift = exp + exponent(to_currency) - exponent(from_currency)
    if shift >= 0:
        return Figures(fee_minor, net_minor * mantissa * 10**shift)
    return Figures(fee_minor, net_minor * mantissa // 10**-shift)
