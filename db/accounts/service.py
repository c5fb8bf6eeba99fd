"""Accounts: opening one, what a principal may see (`visible_account`, 404 for someone
else's), the views with balance figures (`AccountView`, `LimitsView`), and what
finance/admin change: an account's status and its limits.

Status and limit changes lock the account's rows (`SELECT ... FOR UPDATE`, through the
same `lock_in_order` the worker uses), so a change serializes with any transfer being
applied: a transfer decided before the freeze commits sees `active`, one decided after
sees `frozen` and fails `account_inactive`; nothing in between.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from db.accounts import repository as accounts_repo
from db.accounts.repository import AccountFacts
from db.audit import repository as audit
from db.auth import repository as users_repo
from db.core.config import Settings
from db.core.currencies import is_known_currency
from db.core.errors import Conflict, Forbidden, NotFound, RuleViolation, ValidationFailed
from db.core.money import AmountError, format_minor, parse_amount, to_minor
from db.core.principal import Principal
from db.events import outbox
from db.ledger import limits as limits_rules
from db.models import Account, Balance
from db.pagination import KeysetPage


@dataclass(frozen=True)
class AccountView:
    """An account with its balance figures, as the API renders it."""

    account: AccountFacts  # an ORM Account, or a plain row (a balance read)
    balance_minor: int
    available_minor: int
    overdraft_limit_minor: int


def require_known_currency(currency: str, field: str = "currency") -> None:
    if not is_known_currency(currency):
        raise ValidationFailed.field(field, f"unknown ISO 4217 currency code {currency!r}")


def open_account(
    session: Session, principal: Principal, *, currency: str, name: str | None, owner_id: uuid.UUID | None
) -> Account:
    require_known_currency(currency)
    if owner_id is not None and owner_id != principal.id:
        if not principal.sees_everything:
            raise ValidationFailed.field("owner_id", "only finance or admin may open accounts for others")
        if users_repo.get(session, owner_id) is None:
            raise ValidationFailed.field("owner_id", "no such user")
    account = Account(owner_id=owner_id or principal.id, currency=currency, name=name or "", kind="user")
    session.add(account)
    session.flush()
    session.add(Balance(account_id=account.id, currency=currency))
    # Money enters and leaves through the currency's system account: make sure it exists.
    accounts_repo.system_account(session, currency)
    audit.record(
        session,
        action="account.opened",
        entity_type="account",
        entity_id=account.id,
        actor_id=principal.id,
        data={"currency": currency},
    )
    session.flush()
    return account


def visible_view(session: Session, principal: Principal, account_id: uuid.UUID) -> AccountView:
    """`view(visible_account(...))` in one statement (a balance read): 404 alike for an
    account that does not exist and one the principal may not see."""
    found = accounts_repo.account_and_figures(session, account_id)
    if found is None or not _may_see(principal, found[0]):
        raise NotFound("account not found")
    return _view(*found)


def _may_see(principal: Principal, account: AccountFacts) -> bool:
    return principal.sees_everything or account.owner_id == principal.id


def visible_account(session: Session, principal: Principal, account_id: uuid.UUID) -> Account:
    """The account if the principal may see it; otherwise 404 (no enumeration)."""
    account = accounts_repo.get(session, account_id)
    if account is None or not _may_see(principal, account):
        raise NotFound("account not found")
    return account


def list_visible(
    session: Session,
    principal: Principal,
    page: KeysetPage,
    *,
    owner_id: uuid.UUID | None = None,
    currency: str | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """A page of the accounts the principal may see, as views. Finance/admin see every
    account and may filter by owner and kind; anyone else sees their own user accounts."""
    staff = principal.sees_everything
    rows = accounts_repo.list_visible(
        session,
        owner_id=owner_id if staff else principal.id,
        currency=currency,
        kind=kind if staff else "user",
        after=page.after,
        limit=page.limit,
    )
    return page.of(rows, lambda pairs: views(session, pairs))


def views(session: Session, pairs: list[tuple[Account, Balance]]) -> list[AccountView]:
    """The accounts' views; every figure of one account from one snapshot (the balances
    in `pairs` may be older than this statement and are not used)."""
    found = accounts_repo.figures(session, [account.id for account, _ in pairs])
    return [_view(account, found[account.id]) for account, _ in pairs]


def view(session: Session, account: Account) -> AccountView:
    """One account's view: its figures in one statement (no balance row, no account)."""
    figures = accounts_repo.figures(session, [account.id]).get(account.id)
    if figures is None:
        raise NotFound("account not found")
    return _view(account, figures)


def _view(account: AccountFacts, figures: accounts_repo.Figures) -> AccountView:
    return AccountView(
        account=account,
        balance_minor=figures.balance_minor,
        available_minor=figures.available_minor,
        overdraft_limit_minor=figures.overdraft_limit_minor,
    )


# action -> (statuses it may start from, status it leads to). `closed` is final.
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "freeze": (("active",), "frozen"),
    "unfreeze": (("frozen",), "active"),
    "close": (("active", "frozen"), "closed"),
}
AUDIT_ACTIONS = {"freeze": "account.frozen", "unfreeze": "account.unfrozen", "close": "account.closed"}
LIMIT_FIELDS = (*limits_rules.LIMIT_NAMES, "overdraft_limit")


@dataclass(frozen=True)
class LimitsView:
    account: Account
    limits: limits_rules.Limits
    overdraft_limit_minor: int | None  # None: unlimited (system accounts)


def _locked(session: Session, principal: Principal, account_id: uuid.UUID) -> tuple[Account, Balance]:
    if not principal.sees_everything:
        raise Forbidden("only finance or admin may change an account's status or limits")
    row = accounts_repo.lock_in_order(session, [account_id]).get(account_id)
    if row is None:
        raise NotFound("account not found")
    return row


# The event each change announces (`account.<name>`, db/events/outbox.py).
EVENT_NAMES = {"freeze": "frozen", "unfreeze": "unfrozen", "close": "closed"}


def change_status(
    session: Session, principal: Principal, account_id: uuid.UUID, action: str, reason: str | None
) -> Account:
    """freeze | unfreeze | close, with an audit row carrying the reason.

    Closing needs a zero balance (otherwise money would be stranded) and is
    irreversible; a repeated or impossible change is a 409, never a silent no-op.
    """
    allowed_from, new_status = TRANSITIONS[action]
    account, balance = _locked(session, principal, account_id)
    if account.kind == "system":
        raise Conflict("system accounts are always active", {"kind": "system"})
    if account.status not in allowed_from:
        raise Conflict(
            f"cannot {action} an account that is {account.status}",
            {"status": account.status, "allowed_from": list(allowed_from)},
        )
    if action == "close" and balance.balance_minor != 0:
        raise Conflict(
            "only an account with a zero balance can be closed",
            {"balance": format_minor(balance.balance_minor, account.currency)},
        )
    if action == "close" and balance.held_minor != 0:
        # A closed account's holds could never be captured: void them (or let them expire) first.
        raise Conflict(
            "an account with held amounts cannot be closed; void its holds first",
            {"held": format_minor(balance.held_minor, account.currency)},
        )
    old_status, account.status = account.status, new_status
    audit.record(
        session,
        action=AUDIT_ACTIONS[action],
        entity_type="account",
        entity_id=account.id,
        actor_id=principal.id,
        data={"from": old_status, "to": new_status, "reason": reason},
    )
    outbox.record(session, [outbox.account_event(session, account, EVENT_NAMES[action])])
    return account


def limits_of(account: Account, balance: Balance, settings: Settings) -> LimitsView:
    if account.kind == "system":
        return LimitsView(account, limits_rules.NO_LIMITS, None)
    return LimitsView(account, limits_rules.effective(account, settings), balance.overdraft_limit_minor)


def view_limits(session: Session, account: Account, settings: Settings) -> LimitsView:
    balance = accounts_repo.balance_of(session, account.id)
    if balance is None:
        raise NotFound("account not found")
    return limits_of(account, balance, settings)


def set_limits(
    session: Session,
    principal: Principal,
    account_id: uuid.UUID,
    changes: dict[str, Any],
    settings: Settings,
) -> LimitsView:
    """Apply overrides: a decimal string (an integer for the count) sets one, null resets
    it to the configured default (the overdraft limit to 0). Keys not given are kept."""
    account, balance = _locked(session, principal, account_id)
    if account.kind == "system":
        raise Conflict("system accounts have no limits and an unlimited overdraft", {"kind": "system"})
    if account.status == "closed":
        raise Conflict("the account is closed", {"status": "closed"})
    before = _overrides(account, balance)
    currency = account.currency
    if "max_per_transaction" in changes:
        account.max_per_transaction_minor = _amount(
            changes["max_per_transaction"], currency, "max_per_transaction", settings
        )
    if "daily_outgoing_limit" in changes:
        account.daily_outgoing_limit_minor = _amount(
            changes["daily_outgoing_limit"], currency, "daily_outgoing_limit", None
        )
    if "per_minute_outgoing_count" in changes:
        account.per_minute_outgoing_count = changes["per_minute_outgoing_count"]
    if "overdraft_limit" in changes:
        value = changes["overdraft_limit"]
        overdraft = 0 if value is None else _parse(value, currency, "overdraft_limit", allow_zero=True)
        cap = to_minor(settings.max_overdraft, currency)
        if overdraft > cap:
            raise RuleViolation(
                "the overdraft exceeds the largest one that may be granted (LEDGERQ_MAX_OVERDRAFT)",
                {"overdraft_limit": value, "max_overdraft": format_minor(cap, currency)},
                code="overdraft_cap_exceeded",
            )
        if balance.balance_minor - balance.held_minor < -overdraft:  # holds count (db/holds)
            raise Conflict(
                "the balance is already below the requested overdraft floor",
                {
                    "balance": format_minor(balance.balance_minor, currency),
                    "overdraft_limit": format_minor(overdraft, currency),
                },
            )
        balance.overdraft_limit_minor = overdraft
    after = _overrides(account, balance)
    if after != before:
        audit.record(
            session,
            action="account.limits_changed",
            entity_type="account",
            entity_id=account.id,
            actor_id=principal.id,
            data={"before": before, "after": after},
        )
    session.flush()
    return limits_of(account, balance, settings)


def _overrides(account: Account, balance: Balance) -> dict[str, int | None]:
    return {
        "max_per_transaction_minor": account.max_per_transaction_minor,
        "daily_outgoing_limit_minor": account.daily_outgoing_limit_minor,
        "per_minute_outgoing_count": account.per_minute_outgoing_count,
        "overdraft_limit_minor": balance.overdraft_limit_minor,
    }


def _amount(value: str | None, currency: str, field: str, settings: Settings | None) -> int | None:
    if value is None:
        return None
    return _parse(value, currency, field, max_amount=settings.max_amount if settings else None)


def _parse(
    value: str, currency: str, field: str, *, allow_zero: bool = False, max_amount: Decimal | None = None
) -> int:
    try:
        return parse_amount(value, currency, max_amount=max_amount, allow_zero=allow_zero)
    except AmountError as exc:
        raise ValidationFailed.field(field, str(exc)) from None
