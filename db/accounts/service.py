from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from db.accounts import repository as accounts_repo
from db.audit import repository as audit
from db.auth import repository as users_repo
from db.core.currencies import is_known_currency
from db.core.errors import NotFound, ValidationFailed
from db.core.principal import Principal
from db.models import Account, Balance


@dataclass(frozen=True)
class AccountView:
    """An account with its balance figures, as the API renders it."""

    account: Account
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


def visible_account(session: Session, principal: Principal, account_id: uuid.UUID) -> Account:
    """The account if the principal may see it; otherwise 404 (no enumeration)."""
    account = accounts_repo.get(session, account_id)
    if account is None or not (principal.sees_everything or account.owner_id == principal.id):
        raise NotFound("account not found")
    return account


def views(session: Session, pairs: list[tuple[Account, Balance]]) -> list[AccountView]:
    pending = accounts_repo.pending_outgoing(session, [account.id for account, _ in pairs])
    return [
        AccountView(
            account=account,
            balance_minor=balance.balance_minor,
            available_minor=balance.balance_minor - pending.get(account.id, 0),
            overdraft_limit_minor=balance.overdraft_limit_minor,
        )
        for account, balance in pairs
    ]


def view(session: Session, account: Account) -> AccountView:
    balance = accounts_repo.balance_of(session, account.id)
    if balance is None:
        raise NotFound("account not found")
    return views(session, [(account, balance)])[0]
