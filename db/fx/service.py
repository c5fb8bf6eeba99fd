"""Rates as finance manages them: `set_rate` appends a version (and an audit row) when
the rate or fee changes; reads return the current version of a pair or of every pair.

A pair is directional: USD/EUR says what one USD buys in EUR; EUR/USD is its own pair
with its own rate and fee (a spread is two rates, as Wise and the banks quote them), never
derived by inverting.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db.accounts.service import require_known_currency
from db.audit import repository as audit
from db.core.errors import Forbidden, NotFound, ValidationFailed
from db.core.principal import Principal
from db.fx import repository as fx_repo
from db.fx.rates import FEE_BPS_MAX, RateError, parse_rate, render_rate
from db.models import FxRateVersion
from db.pagination import KeysetPage


def check_pair(base: str, quote: str) -> None:
    """Both known ISO 4217 codes, and two different ones (422 otherwise)."""
    require_known_currency(base, "base")
    require_known_currency(quote, "quote")
    if base == quote:
        raise ValidationFailed.field("quote", "must differ from base: a currency has no rate to itself")


def set_rate(
    session: Session,
    principal: Principal,
    base: str,
    quote: str,
    *,
    rate: object,
    fee_bps: int,
    request_id: str | None,
) -> FxRateVersion:
    """The pair's current version after this PUT: a new one when rate or fee changed
    (audited `fx.rate_set` with the previous figures), the unchanged current otherwise
    (a repeated PUT is idempotent and records nothing)."""
    if not principal.sees_everything:
        raise Forbidden("only finance or admin may set exchange rates")
    check_pair(base, quote)
    try:
        value = parse_rate(rate)
    except RateError as exc:
        raise ValidationFailed.field("rate", str(exc)) from None
    if not 0 <= fee_bps <= FEE_BPS_MAX:
        raise ValidationFailed.field("fee_bps", f"must be an integer from 0 to {FEE_BPS_MAX}")
    fx_repo.lock_pair(session, base, quote)
    previous = fx_repo.current(session, base, quote)
    if previous is not None and previous.rate == value and previous.fee_bps == fee_bps:
        return previous
    version = fx_repo.insert(
        session,
        base=base,
        quote=quote,
        rate=value,
        fee_bps=fee_bps,
        created_by=principal.id,
        request_id=request_id,
    )
    audit.record(
        session,
        action="fx.rate_set",
        entity_type="fx_rate",
        entity_id=f"{base}/{quote}",
        actor_id=principal.id,
        data={
            "version": version.id,
            "rate": render_rate(value),
            "fee_bps": fee_bps,
            "previous_version": previous.id if previous else None,
            "previous_rate": render_rate(previous.rate) if previous else None,
            "previous_fee_bps": previous.fee_bps if previous else None,
        },
        request_id=request_id,
    )
    session.flush()
    return version


def get_rate(session: Session, base: str, quote: str) -> FxRateVersion:
    check_pair(base, quote)
    version = fx_repo.current(session, base, quote)
    if version is None:
        raise NotFound(f"no exchange rate from {base} to {quote}")
    return version


def list_rates(session: Session) -> list[FxRateVersion]:
    return fx_repo.all_current(session)


def rate_history(session: Session, base: str, quote: str, page: KeysetPage) -> dict[str, Any]:
    """Every version of the pair, newest first (the one each exchange points at included)."""
    check_pair(base, quote)
    return page.of(fx_repo.history(session, base, quote, before_id=page.after, limit=page.limit))
