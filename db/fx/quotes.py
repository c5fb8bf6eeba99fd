"""The quote an exchange request fixes at request time: the pair's current rate version,
the fee and what the target receives, as the transaction row's columns. The worker
applies exactly these figures later, whatever the rate is by then."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db.accounts import repository as accounts_repo
from db.core.config import Settings
from db.core.errors import RateChanged, ValidationFailed
from db.core.money import format_minor, to_minor
from db.fx import repository as fx_repo
from db.fx.rates import RateError, exchange_figures, parse_rate, render_rate
from db.models import Transaction


def quote(
    session: Session,
    *,
    amount_minor: int,
    from_currency: str,
    to_currency: str,
    client_rate: str | None,
    settings: Settings,
) -> dict[str, Any]:
    """The exchange's columns (`to_amount_minor`, `to_currency`, `fx_rate`, `fee_minor`,
    `fx_rate_version_id`). 422 without a rate for the pair or when the target would get
    nothing or more than the maximum amount; 409 `rate_changed` when the client quoted
    another rate than the current one (compared as numbers: "1.50" is "1.5")."""
    quoted = None
    if client_rate is not None:
        try:
            quoted = parse_rate(client_rate)
        except RateError as exc:
            raise ValidationFailed.field("rate", str(exc)) from None
    version = fx_repo.current(session, from_currency, to_currency)
    if version is None:
        raise ValidationFailed.field(
            "to_account_id", f"no exchange rate from {from_currency} to {to_currency}"
        )
    if quoted is not None and quoted != version.rate:
        raise RateChanged(
            f"The {from_currency}/{to_currency} rate is now {render_rate(version.rate)}, not {render_rate(quoted)}.",
            {"rate": render_rate(version.rate), "fee_bps": version.fee_bps, "quoted": render_rate(quoted)},
        )
    figures = exchange_figures(
        amount_minor,
        rate=version.rate,
        fee_bps=version.fee_bps,
        from_currency=from_currency,
        to_currency=to_currency,
    )
    if figures.to_amount_minor == 0:
        raise ValidationFailed.field(
            "amount",
            f"is too small to exchange: after the fee it buys less than the smallest unit of {to_currency}",
        )
    ceiling = to_minor(settings.max_amount, to_currency)
    if figures.to_amount_minor > ceiling:
        raise ValidationFailed.field(
            "amount",
            f"would buy more than the maximum amount ({format_minor(ceiling, to_currency)} {to_currency})",
        )
    # The accounts the worker will post through exist before it runs (created on demand).
    for currency, role in ((from_currency, "fx"), (to_currency, "fx"), (from_currency, "fees")):
        accounts_repo.system_account(session, currency, role)
    return {
        "to_amount_minor": figures.to_amount_minor,
        "to_currency": to_currency,
        "fx_rate": version.rate,
        "fee_minor": figures.fee_minor,
        "fx_rate_version_id": version.id,
    }


def reversal_figures(original: Transaction) -> dict[str, Any]:
    """A reversal of an exchange moves the same amounts back at the original rate: the
    target gives back `to_amount`, the source gets back `amount`, the fee refunded
    (`fee_minor`, in the reversal's `to_currency`). Empty for any other transaction."""
    if original.to_currency is None:
        return {}
    assert original.to_amount_minor is not None
    return {
        "amount_minor": original.to_amount_minor,
        "currency": original.to_currency,
        "to_amount_minor": original.amount_minor,
        "to_currency": original.currency,
        "fx_rate": original.fx_rate,
        "fee_minor": original.fee_minor,
        "fx_rate_version_id": original.fx_rate_version_id,
    }


def audit_data(figures: dict[str, Any]) -> dict[str, Any]:
    """The exchange figures of a request as its audit row keeps them (JSON: the rate as
    its decimal string); empty for anything but an exchange or its reversal."""
    if not figures:
        return {}
    return {
        "to_amount_minor": figures["to_amount_minor"],
        "to_currency": figures["to_currency"],
        "rate": render_rate(figures["fx_rate"]),
        "fee_minor": figures["fee_minor"],
        "rate_version": figures["fx_rate_version_id"],
    }


def rendered(tx: Any) -> dict[str, Any]:
    """The exchange fields of a transaction as the API shows them (all null on anything
    but an exchange or its reversal): `fee` in the exchange's source currency, which is
    the reversal's `to_currency` (the fee it refunds)."""
    if tx.to_currency is None:
        return {"to_amount": None, "to_currency": None, "rate": None, "fee": None, "rate_version": None}
    fee_currency = tx.currency if tx.type == "exchange" else tx.to_currency
    return {
        "to_amount": format_minor(tx.to_amount_minor, tx.to_currency),
        "to_currency": tx.to_currency,
        "rate": render_rate(tx.fx_rate),
        "fee": format_minor(tx.fee_minor, fee_currency),
        "rate_version": tx.fx_rate_version_id,
    }
