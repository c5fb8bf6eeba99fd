"""What a principal may see of transactions, as `TransactionView`s: the one home of
transaction visibility (customers see transactions touching their own accounts; staff
see everything) and of `reversed_by`, which is not a column but the id of the effective
reversal, read for a whole page in one query."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from db.accounts import repository as accounts_repo
from db.accounts.service import visible_account
from db.core.errors import NotFound
from db.core.principal import Principal
from db.models import Transaction
from db.pagination import KeysetPage
from db.transactions import repository as transactions_repo


@dataclass(frozen=True)
class TransactionView:
    """A transaction as its API schema shows it: every column, plus `reversed_by`."""

    transaction: Transaction
    reversed_by: uuid.UUID | None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transaction, name)


def views(session: Session, txs: list[Transaction]) -> list[TransactionView]:
    """Views of `txs`, their `reversed_by` read in one query."""
    found = transactions_repo.reversed_by(session, [tx.id for tx in txs])
    return [TransactionView(tx, found.get(tx.id)) for tx in txs]


def view(session: Session, tx: Transaction) -> TransactionView:
    return views(session, [tx])[0]


def visible(session: Session, principal: Principal, transaction_id: uuid.UUID) -> Transaction:
    """The transaction if the principal may see it; otherwise 404 (no enumeration)."""
    tx = transactions_repo.get(session, transaction_id)
    if tx is None:
        raise NotFound("transaction not found")
    if not principal.sees_everything:
        accounts_repo.preload(session, (tx.from_account_id, tx.to_account_id))  # one query, not two
        own = {
            a.id
            for a in (
                accounts_repo.get(session, tx.from_account_id),
                accounts_repo.get(session, tx.to_account_id),
            )
            if a is not None and a.owner_id == principal.id
        }
        if not own:
            raise NotFound("transaction not found")
    return tx


def history(
    session: Session,
    principal: Principal,
    page: KeysetPage,
    *,
    account_id: uuid.UUID | None,
    status: str | None,
    type_: str | None,
    batch_id: uuid.UUID | None,
    created_from: datetime | None,
    created_to: datetime | None,
) -> dict[str, Any]:
    """A page of the transactions the principal may see, newest first."""
    if account_id:
        visible_account(session, principal, account_id)
    rows = transactions_repo.history(
        session,
        owner_id=None if principal.sees_everything else principal.id,
        account_id=account_id,
        status=status,
        type_=type_,
        batch_id=batch_id,
        created_from=created_from,
        created_to=created_to,
        before_seq=page.after,
        limit=page.limit,
    )
    return page.of(rows, lambda txs: views(session, txs))
