"""Property: after any sequence of exchanges (and reversals of some) through the real
request path, engine and PostgreSQL, every currency sums to zero and `ledgerq verify`
finds nothing wrong."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.core.config import get_settings
from db.core.errors import DomainError
from db.fx.service import set_rate
from db.session import unit_of_work
from db.transactions.service import MoneyMovement, reverse, submit
from tests.fixtures.fx import currency_sums
from tests.fixtures.ledger import apply_now, ledger_problems, transaction

CURRENCIES = ("JPY", "USD", "KWD", "CLF")

# A rate of up to 12 significant digits: mantissa x 10^-scale, kept within the format.
# Scales up to 10^-12 keep most quotes above one minor unit (the rest are 422s).
rates = st.builds(
    lambda mantissa, scale: format(Decimal(mantissa).scaleb(-scale), "f"),
    st.integers(1, 999_999_999_999),
    st.integers(0, 12),
)
pairs = st.sampled_from([(a, b) for a in CURRENCIES for b in CURRENCIES if a != b])
steps = st.lists(
    st.tuples(pairs, st.integers(1, 50_000), st.booleans(), rates, st.integers(0, 9999)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps)
def test_random_exchanges_keep_every_currency_at_zero_and_the_ledger_sound(make, steps):
    finance, alice = make.user("finance"), make.user()
    accounts = {currency: make.account(alice, currency=currency) for currency in CURRENCIES}
    for currency, account in accounts.items():
        make.fund(account, "1000000", currency)
    completed = []
    for (source, target), amount_minor, undo, rate, fee_bps in steps:
        with unit_of_work() as uow:
            set_rate(
                uow.session, finance.principal, source, target, rate=rate, fee_bps=fee_bps, request_id=None
            )
        amount = str(amount_minor)  # whole units: valid in every currency
        try:
            with unit_of_work() as uow:
                tx = submit(
                    uow.session,
                    alice.principal,
                    MoneyMovement(
                        type="exchange",
                        amount=amount,
                        currency=source,
                        from_account_id=accounts[source],
                        to_account_id=accounts[target],
                    ),
                    idempotency_key=None,
                    settings=get_settings(),
                ).record
                tx_id = tx.id
        except DomainError as refused:  # a to_amount of 0 or above the maximum: 422, nothing recorded
            assert refused.code == "validation_error", refused.message
            continue
        status = apply_now(tx_id)
        assert status in ("completed", "failed")
        if status == "completed":
            completed.append((tx_id, undo))
        else:
            assert transaction(tx_id).failure_code == "insufficient_funds"
    for tx_id, undo in completed:
        if undo:
            try:
                with unit_of_work() as uow:
                    reversal = reverse(uow.session, finance.principal, tx_id, idempotency_key=None).record.id
            except DomainError as refused:  # the target already spent it on a later exchange
                assert refused.code == "insufficient_funds", refused.message
                continue
            assert apply_now(reversal) in ("completed", "failed")
            assert transaction(reversal).failure_code in (None, "insufficient_funds")
    assert all(total == 0 for total in currency_sums().values()), currency_sums()
    assert ledger_problems() == []
