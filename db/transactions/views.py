"""What a principal may see of transactions, as `TransactionView`s: the one home of
transaction visibility (customers see transactions touching their own accounts; staff
see everything), of the counterparty's reduced view, and of `reversed_by`, which is not
a column but the id of the effective reversal, read for a whole page in one query."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.accounts.service import visible_account
from db.core.errors import NotFound
from db.core.principal import Principal
from db.models import Account, Transaction
from db.pagination import KeysetPage
from db.transactions import repository as transactions_repo

# What only the sender's side reads: the counterparty (a customer who neither created the
# transaction nor owns its source account) sees that money came, or did not, and no more.
PRIVATE_TO_THE_SENDER = frozenset(
    {"reference", "metadata_", "idempotency_key", "failure_code", "failure_message"}
)


@dataclass(frozen=True)
class TransactionView:
    """A transaction as its API schema shows it: every column, plus `reversed_by`; for a
    counterparty (`reduced`), the sender's private fields are None. `transaction` is the
    ORM object, or a plain row with its attribute names (`shown`)."""

    transaction: Transaction | Any
    reversed_by: uuid.UUID | None
    reduced: bool = False

    def __getattr__(self, name: str) -> Any:
        if self.reduced and name in PRIVATE_TO_THE_SENDER:
            return None
        return getattr(self.transaction, name)


def views(session: Session, principal: Principal, txs: list[Transaction]) -> list[TransactionView]:
    """The principal's views of `txs`, their `reversed_by` and source owners read in one
    query each."""
    found = transactions_repo.reversed_by(session, [tx.id for tx in txs])
    sender_side = _sender_side(session, principal, txs)
    return [TransactionView(tx, found.get(tx.id), reduced=tx.id not in sender_side) for tx in txs]


def view(session: Session, principal: Principal, tx: Transaction) -> TransactionView:
    return views(session, principal, [tx])[0]


def view_of_new(tx: Transaction) -> TransactionView:
    """The view of a transaction the request just created, without a query: nothing can
    have reversed it yet (a reversal needs it committed), and its creator sees it in full."""
    return TransactionView(tx, None)


def _sender_side(session: Session, principal: Principal, txs: list[Transaction]) -> set[uuid.UUID]:
    """The ids of the transactions the principal sees in full: staff all of them,
    customers what they created or what draws on an account they own."""
    if principal.sees_everything:
        return {tx.id for tx in txs}
    sources = {tx.from_account_id for tx in txs if tx.created_by != principal.id}
    owned = (
        set(
            session.scalars(
                select(Account.id).where(Account.id.in_(sources), Account.owner_id == principal.id)
            )
        )
        if sources
        else set()
    )
    return {tx.id for tx in txs if tx.created_by == principal.id or tx.from_account_id in owned}


def _if_visible(principal: Principal, found: Any) -> Any:
    """The one visibility rule for one transaction: staff see it, and so does the owner
    of either of its accounts; anyone else gets 404 (no enumeration). `found` has
    `source_owner` and `target_owner` (or is None: no such transaction)."""
    if found is None or not (
        principal.sees_everything or principal.id in (found.source_owner, found.target_owner)
    ):
        raise NotFound("transaction not found")
    return found


def visible(session: Session, principal: Principal, transaction_id: uuid.UUID) -> Transaction:
    """The transaction, as an ORM object, if the principal may see it; otherwise 404."""
    return _if_visible(principal, transactions_repo.with_parties(session, transaction_id)).transaction


def shown(session: Session, principal: Principal, transaction_id: uuid.UUID) -> TransactionView:
    """`view` of `visible` in one query (GET /transactions/{id}, the path clients poll),
    over a plain row: reduced unless staff, its creator or the owner of its source
    account (as `_sender_side` decides for pages)."""
    row = _if_visible(principal, transactions_repo.shown_row(session, transaction_id))
    sender_side = principal.sees_everything or principal.id in (row.created_by, row.source_owner)
    return TransactionView(row, row.reversal_id, reduced=not sender_side)


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
    return page.of(rows, lambda txs: views(session, principal, txs))
