"""Exact money: amounts are integers of minor units in storage and in the ledger,
decimal strings at the edges. A float never touches an amount.

Storage choice (documented in the README): BIGINT minor units. Integer arithmetic in
PostgreSQL and Python is exact and fast, and the currency's exponent (from
`db.core.currencies`) is the only thing needed to render an amount.
"""

from __future__ import annotations

import re
from decimal import Decimal

from db.core.currencies import exponent

# Plain digits with an optional fraction: no sign, exponent, spaces or separators.
# Used with fullmatch: `$` also matches before a trailing newline ("3.00\n").
_AMOUNT_RE = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?")
# 2**63-1 is the BIGINT ceiling; 18 digits keeps every intermediate sum well inside it.
MAX_DIGITS = 18


class AmountError(ValueError):
    """A client-supplied amount that is not acceptable; the message says why."""


def parse_amount(
    text: object, currency: str, *, max_amount: Decimal | None = None, allow_zero: bool = False
) -> int:
    """Parse a client's decimal string into minor units of `currency`.

    Rejects (never rounds) more decimals than the currency has, zero (unless
    `allow_zero`: an overdraft limit may be "0"), and anything above `max_amount`
    (major units).
    """
    if not isinstance(text, str):
        raise AmountError('must be a decimal string such as "10.50", not a JSON number')
    match = _AMOUNT_RE.fullmatch(text)
    if not match:
        raise AmountError("must be a plain decimal string: digits with an optional fraction")
    places = exponent(currency)
    fraction = (match.group(2) or ".")[1:]
    if len(fraction) > places:
        raise AmountError(f"{currency} allows at most {places} decimal places")
    whole = match.group(1)
    if len(whole) + places > MAX_DIGITS:
        raise AmountError("is too large")
    minor = int(whole) * 10**places + int(fraction.ljust(places, "0") or "0")
    if minor < 0 or (minor == 0 and not allow_zero):
        raise AmountError("must be greater than zero")
    if max_amount is not None and minor > to_minor(max_amount, currency):
        raise AmountError(f"must not exceed {format_minor(to_minor(max_amount, currency), currency)}")
    return minor


def to_minor(amount: Decimal, currency: str) -> int:
    """A trusted Decimal (from settings) in minor units, truncated to the currency."""
    return int(amount.scaleb(exponent(currency)).to_integral_value(rounding="ROUND_DOWN"))


def format_minor(minor: int, currency: str) -> str:
    """Render minor units with exactly the currency's decimals ("100.00", "500" JPY)."""
    places = exponent(currency)
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor)).rjust(places + 1, "0")
    if places == 0:
        return sign + digits
    return f"{sign}{digits[:-places]}.{digits[-places:]}"
