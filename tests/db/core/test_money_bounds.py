"""LEDGERQ_MAX_AMOUNT is bounded so that one amount, in minor units of the currency with
the most decimals (4, CLF), stays below 10^18: every single amount fits a BIGINT with
room for sums, and the engine decides the sums that would not (`amount_out_of_range`)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from db.core.config import Settings
from db.core.money import parse_amount


def test_the_largest_allowed_maximum_is_accepted_and_parses_in_every_exponent():
    settings = Settings(LEDGERQ_MAX_AMOUNT="99999999999999")  # 10^14 - 1: x 10^4 < 10^18
    assert settings.max_amount == Decimal("99999999999999")
    assert parse_amount("99999999999999", "CLF", max_amount=settings.max_amount) == 10**18 - 10**4


@pytest.mark.parametrize("value", ["100000000000000", "1e20", "0", "-5"])
def test_a_maximum_that_would_not_fit_minor_units_or_is_not_positive_is_refused(value):
    with pytest.raises(ValidationError, match="LEDGERQ_MAX_AMOUNT|greater than 0"):
        Settings(LEDGERQ_MAX_AMOUNT=value)
