"""Exchanges (and their reversals) in the posting engine: the money rules in
`rules.decide` terms, and the ledger lines.

An exchange is two transfers glued into one atomic decision, one per currency, each
through that currency's system `fx` account:

    source  --amount (X)-->     fx X        (minus the fee, which goes to fees X)
    fx Y    --to_amount (Y)-->  target

so every currency sums to zero. The source pays `amount` in one entry (an account has
at most one entry per transaction: the unique key that makes a second application
impossible), split between `fx X` (amount - fee) and `fees X` (the fee, when there is
one): 4 entries, 5 with a fee. A reversal of an exchange posts the very same lines with
the opposite signs, the fee refunded.

The figures were fixed at request time (db/fx/quotes.py); nothing is recomputed here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from db.accounts import repository as accounts_repo
from db.core.money import format_minor
from db.ledger import limits as limits_rules
from db.ledger.posting.rules import BIGINT_MAX, BIGINT_MIN, COMPLETED, Decision
from db.ledger.posting.rules import decide as decide_transfer

# (currency, system role) -> account id
SystemAccounts = Mapping[tuple[str, str], uuid.UUID]


def applies(item: Any) -> bool:
    """An exchange, or the reversal of one (it carries the mirrored figures)."""
    return getattr(item, "to_currency", None) is not None


def fee_currency(item: Any) -> str:
    """The fee is the exchange's source currency: `currency` of the exchange, `to_currency`
    of its reversal (which refunds it)."""
    return item.currency if item.type == "exchange" else item.to_currency


def _needed(item: Any) -> tuple[tuple[str, str], ...]:
    return ((item.currency, "fx"), (item.to_currency, "fx"), (fee_currency(item), "fees"))


def system_accounts(session: Session, items: Iterable[Any]) -> dict[tuple[str, str], uuid.UUID]:
    """The `fx` and `fees` accounts the exchanges among `items` post through (the request
    created them; created here too should one be missing: the call is race-safe)."""
    wanted = {key for item in items if applies(item) for key in _needed(item)}
    return {key: accounts_repo.system_account(session, *key).id for key in sorted(wanted)}


@dataclass(frozen=True)
class _Leg:
    """One currency's side of the exchange, as `rules.decide` reads a transaction."""

    id: uuid.UUID
    type: str
    amount_minor: int
    currency: str


def lines(item: Any, system: SystemAccounts) -> list[tuple[uuid.UUID, int, str]]:
    """(account, signed amount, currency) of every ledger entry the item posts."""
    fee = item.fee_minor or 0
    fx_from, fx_to = system[(item.currency, "fx")], system[(item.to_currency, "fx")]
    fees = system[(fee_currency(item), "fees")]
    if item.type == "exchange":
        paid = [(fx_from, item.amount_minor - fee, item.currency)] + (
            [(fees, fee, item.currency)] if fee else []
        )
        received = [(fx_to, -item.to_amount_minor, item.to_currency)]
    else:  # the reversal: the exchange's lines, signs swapped, the fee refunded
        paid = [(fx_from, item.amount_minor, item.currency)]
        received = [(fx_to, -(item.to_amount_minor - fee), item.to_currency)] + (
            [(fees, -fee, item.to_currency)] if fee else []
        )
    return [
        (item.from_account_id, -item.amount_minor, item.currency),
        *paid,
        *received,
        (item.to_account_id, item.to_amount_minor, item.to_currency),
    ]


def decide(
    item: Any,
    rows: Mapping[uuid.UUID, tuple[Any, Any]],
    system: SystemAccounts,
    limits: limits_rules.Limits,
    usage: limits_rules.Usage,
) -> Decision:
    """The transfer rules on each leg, in their order: both accounts active first, then
    the paying leg (currency, the source's limits and funds), then the receiving leg
    (the target's currency); then no balance out of its range and none below its floor
    (the `fees` account has a floor of zero)."""
    source, target = rows[item.from_account_id], rows[item.to_account_id]
    for account in (source[0], target[0]):
        if account.status != "active":
            return Decision("failed", "account_inactive", f"account {account.id} is {account.status}")
    pay = _Leg(item.id, item.type, item.amount_minor, item.currency)
    decision = decide_transfer(pay, source, rows[system[(item.currency, "fx")]], limits, usage)
    if decision.status != "completed":
        return decision
    receive = _Leg(item.id, item.type, item.to_amount_minor, item.to_currency)
    decision = decide_transfer(receive, rows[system[(item.to_currency, "fx")]], target)
    if decision.status != "completed":
        return decision
    for account_id, amount, currency in lines(item, system):
        account, balance = rows[account_id]
        after = balance.balance_minor + amount
        if not BIGINT_MIN <= after <= BIGINT_MAX:
            return Decision(
                "failed",
                "amount_out_of_range",
                f"the balance of account {account.id} would leave the range a balance can hold",
            )
        if not balance.allow_negative and after < -balance.overdraft_limit_minor:
            return Decision(
                "failed",
                "insufficient_funds",
                f"account {account.id} cannot cover {format_minor(-amount, currency)}",
            )
    return COMPLETED
