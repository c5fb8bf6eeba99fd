"""Outgoing limits: what an account may send, and the check both sides of the queue run.

Three limits constrain money *leaving a user account* through a transfer or a debit:

- `max_per_transaction`: the largest single amount;
- `daily_outgoing_limit`: the sum sent per UTC calendar day;
- `per_minute_outgoing_count`: how many transfers in any rolling 60 seconds.

Each is the account's override (set by finance/admin) or else the configured default
(`LEDGERQ_DEFAULT_*`); `None` means unlimited. Credits (the source is the currency's
system account) and reversals (an operator's correction) are not limited.

Holds are checked like transfers when the worker decides them, and a capture is not
checked again (the hold already passed, and a capture can only move less). What counts
as sent (`USAGE_TYPES`): completed transfers, debits and captures, and the amount of a
hold while it is `held` (reserved counts as sent, by the hold's request time), so
hold-and-capture cannot get round a daily limit; a voided or expired hold stops counting.

The API checks them at request time against completed + pending usage (a fast 422,
racy by nature); the worker checks them again against *completed* usage while holding
the source account's row lock. Every completed transfer from an account is written
under that same lock, so the worker's sums cannot be raced: concurrent requests can
never jointly exceed a limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from db.core.config import Settings
from db.core.money import format_minor, to_minor

if TYPE_CHECKING:
    from db.accounts.repository import AccountFacts

LIMITED_TYPES = ("transfer", "debit", "hold", "exchange")
# What counts toward an account's outgoing usage (see the docstring).
USAGE_TYPES = ("transfer", "debit", "hold", "capture", "exchange")
LIMIT_NAMES = ("max_per_transaction", "daily_outgoing_limit", "per_minute_outgoing_count")


@dataclass(frozen=True)
class Limits:
    max_per_transaction_minor: int | None = None
    daily_outgoing_minor: int | None = None
    per_minute_outgoing_count: int | None = None
    overridden: tuple[str, ...] = ()  # which of LIMIT_NAMES come from the account

    @property
    def needs_usage(self) -> bool:
        """Whether checking needs what the account already sent (a query)."""
        return self.daily_outgoing_minor is not None or self.per_minute_outgoing_count is not None


NO_LIMITS = Limits()


@dataclass(frozen=True)
class Usage:
    """What the account already sent: today's amount and the last minute's count."""

    daily_outgoing_minor: int = 0
    minute_outgoing_count: int = 0


@dataclass(frozen=True)
class Breach:
    limit: str
    message: str
    details: dict


def applies(tx_type: str, source: AccountFacts) -> bool:
    return source.kind == "user" and tx_type in LIMITED_TYPES


def effective(account: AccountFacts, settings: Settings) -> Limits:
    """The account's overrides, else the configured defaults (in its currency)."""
    currency = account.currency

    def default_amount(value) -> int | None:
        return None if value is None else max(1, to_minor(value, currency))

    overridden = tuple(
        name
        for name, value in zip(
            LIMIT_NAMES,
            (
                account.max_per_transaction_minor,
                account.daily_outgoing_limit_minor,
                account.per_minute_outgoing_count,
            ),
            strict=True,
        )
        if value is not None
    )
    return Limits(
        max_per_transaction_minor=account.max_per_transaction_minor
        if account.max_per_transaction_minor is not None
        else default_amount(settings.default_max_per_transaction),
        daily_outgoing_minor=account.daily_outgoing_limit_minor
        if account.daily_outgoing_limit_minor is not None
        else default_amount(settings.default_daily_outgoing_limit),
        per_minute_outgoing_count=account.per_minute_outgoing_count
        if account.per_minute_outgoing_count is not None
        else settings.default_per_minute_outgoing_count,
        overridden=overridden,
    )


def check(
    limits: Limits, usage: Usage, amount_minor: int, currency: str, *, per_transaction_only: bool = False
) -> Breach | None:
    """The first limit this amount would break on top of `usage`, or None.

    At the edge is allowed: a limit of 100.00 admits a transfer that brings the day's
    total to exactly 100.00, and a count of 5 admits the fifth transfer of the minute.
    """
    cap = limits.max_per_transaction_minor
    if cap is not None and amount_minor > cap:
        return Breach(
            "max_per_transaction",
            f"{format_minor(amount_minor, currency)} {currency} is over the per-transaction limit "
            f"of {format_minor(cap, currency)}",
            {"limit": "max_per_transaction", "limit_value": format_minor(cap, currency)},
        )
    if per_transaction_only:
        return None
    daily = limits.daily_outgoing_minor
    if daily is not None and usage.daily_outgoing_minor + amount_minor > daily:
        return Breach(
            "daily_outgoing_limit",
            f"{format_minor(amount_minor, currency)} {currency} on top of "
            f"{format_minor(usage.daily_outgoing_minor, currency)} sent today is over the daily "
            f"outgoing limit of {format_minor(daily, currency)}",
            {
                "limit": "daily_outgoing_limit",
                "limit_value": format_minor(daily, currency),
                "used": format_minor(usage.daily_outgoing_minor, currency),
            },
        )
    count = limits.per_minute_outgoing_count
    if count is not None and usage.minute_outgoing_count + 1 > count:
        return Breach(
            "per_minute_outgoing_count",
            f"{usage.minute_outgoing_count} outgoing transfers in the last minute: the limit is {count}",
            {"limit": "per_minute_outgoing_count", "limit_value": count, "used": usage.minute_outgoing_count},
        )
    return None
