from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.core.sql import DriverQuery, constant, in_ids
from db.models import Account, Balance, Transaction


def get(session: Session, account_id: uuid.UUID) -> Account | None:
    return session.get(Account, account_id)


class AccountFacts(Protocol):
    """What the request-time rules read of an account (db/transactions/service.py,
    db/ledger/limits.py): an ORM `Account` or a plain row from `facts`."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def owner_id(self) -> uuid.UUID | None: ...
    @property
    def name(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def max_per_transaction_minor(self) -> int | None: ...
    @property
    def daily_outgoing_limit_minor(self) -> int | None: ...
    @property
    def per_minute_outgoing_count(self) -> int | None: ...
    @property
    def system_role(self) -> str | None: ...


_FACTS = DriverQuery(select(Account.__table__).where(in_ids(Account.__table__.c.id)))


def facts(session: Session, account_ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, AccountFacts]:
    """These accounts as plain rows, in one query on the session's connection: the
    accept path's two accounts without building ORM objects (the ORM load was a fifth
    of an accepted transfer's CPU) or SQLAlchemy's execute path (`DriverQuery`)."""
    wanted = [account_id for account_id in set(account_ids) if account_id is not None]
    if not wanted:
        return {}
    rows = _FACTS.all(session, {"ids": wanted})
    return {row.id: row for row in rows}


def lock_in_order(
    session: Session, account_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, tuple[Account, Balance]]:
    """Lock accounts and their balance rows one by one in ascending id order.

    Every writer locks in the same global order, so two transfers crossing A->B and
    B->A wait for each other instead of deadlocking.

    FOR NO KEY UPDATE, not FOR UPDATE: the posting never changes an account's key, and a
    plain FOR UPDATE also conflicts with the KEY SHARE locks that inserting a transaction
    takes on its two accounts (foreign-key checks, in from/to order, not id order), which
    deadlocked the API's insert against the worker's locks.
    """
    locked: dict[uuid.UUID, tuple[Account, Balance]] = {}
    for account_id in sorted(set(account_ids)):
        row = session.execute(
            select(Account, Balance)
            .join(Balance, Balance.account_id == Account.id)
            .where(Account.id == account_id)
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        ).one_or_none()
        if row is not None:
            locked[account_id] = (row[0], row[1])
    return locked


def system_account(session: Session, currency: str, role: str = "external") -> Account:
    """The system account of `currency` with `role` (`external`, `fx`, `fees`: see
    db.models.SYSTEM_ROLES), created on first use (race-safe). Only `fees` has a floor of
    zero: it only ever receives fees (and gives back refunded ones)."""
    wanted = select(Account).where(
        Account.kind == "system", Account.currency == currency, Account.system_role == role
    )
    existing = session.scalars(wanted).first()
    if existing is not None:
        return existing
    new_id = uuid.uuid4()
    inserted = session.execute(
        insert(Account)
        .values(
            id=new_id,
            kind="system",
            system_role=role,
            currency=currency,
            name=f"{role} {currency}",
            owner_id=None,
        )
        # A literal predicate, not a bound parameter: once psycopg prepares the statement
        # (5th execution on a connection) a parameter no longer proves the partial
        # index's predicate and PostgreSQL finds no arbiter index.
        .on_conflict_do_nothing(
            index_elements=["currency", "system_role"], index_where=text("kind = 'system'")
        )
        .returning(Account.id)
    ).scalar_one_or_none()
    if inserted is not None:
        session.add(Balance(account_id=new_id, currency=currency, allow_negative=role != "fees"))
        session.flush()
    return session.scalars(wanted).one()


def balance_of(session: Session, account_id: uuid.UUID) -> Balance | None:
    return session.get(Balance, account_id)


@dataclass(frozen=True)
class Figures:
    """An account's balance, overdraft, pending outgoing sum and held amount, from one
    snapshot."""

    balance_minor: int
    overdraft_limit_minor: int
    allow_negative: bool
    pending_minor: int
    held_minor: int = 0  # what its `held` holds reserve (db/holds)

    @property
    def available_minor(self) -> int:
        return self.balance_minor - self.pending_minor - self.held_minor


# An account's pending outgoing sum, correlated to the balance row it sits beside.
_PENDING = (
    select(func.coalesce(func.sum(Transaction.amount_minor), 0))
    .where(Transaction.status == constant("pending"), Transaction.from_account_id == Balance.account_id)
    .correlate(Balance)
    .scalar_subquery()
)
# Figures' columns, in its field order. The statements below are built once: a
# statement built per call cost more CPU than the query's execution (profiled).
_FIGURE_COLUMNS = (
    Balance.balance_minor,
    Balance.overdraft_limit_minor,
    Balance.allow_negative,
    _PENDING.label("pending_minor"),
    Balance.held_minor,
)
_FIGURES = select(Balance.account_id, *_FIGURE_COLUMNS).where(in_ids(Balance.account_id))
_ACCOUNT_AND_FIGURES = DriverQuery(
    select(*Account.__table__.c, *_FIGURE_COLUMNS)
    .join(Balance, Balance.account_id == Account.id)
    .where(Account.id == bindparam("id", type_=PG_UUID(as_uuid=True)))
)


def _figures_of(row: Any, first: int) -> Figures:
    balance, overdraft, allow_negative, pending, held = row[first : first + len(_FIGURE_COLUMNS)]
    return Figures(int(balance), int(overdraft), bool(allow_negative), int(pending), int(held))


def figures(session: Session, account_ids: list[uuid.UUID]) -> dict[uuid.UUID, Figures]:
    """Each account's `Figures` in one statement. Under READ COMMITTED every statement
    has its own snapshot: reading the balance and the pending sum separately lets a
    transfer completing in between count twice (in the balance and still as pending)."""
    if not account_ids:
        return {}
    rows = session.execute(_FIGURES, {"ids": list(account_ids)}).all()
    return {row[0]: _figures_of(row, 1) for row in rows}


def account_and_figures(session: Session, account_id: uuid.UUID) -> tuple[AccountFacts, Figures] | None:
    """The account (a plain row) and its `Figures`, in one statement: a balance read
    (off SQLAlchemy's execute path: `DriverQuery`)."""
    row = _ACCOUNT_AND_FIGURES.one_or_none(session, {"id": account_id})
    if row is None:
        return None
    return row, _figures_of(row, len(Account.__table__.c))


def list_visible(
    session: Session,
    *,
    owner_id: uuid.UUID | None,
    currency: str | None,
    kind: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[tuple[Account, Balance]]:
    """Accounts in id order (the keyset); `owner_id=None` means every owner."""
    query = select(Account, Balance).join(Balance, Balance.account_id == Account.id)
    if owner_id is not None:
        query = query.where(Account.owner_id == owner_id)
    if currency:
        query = query.where(Account.currency == currency)
    if kind:
        query = query.where(Account.kind == kind)
    if after:
        query = query.where(Account.id > after)
    query = query.order_by(Account.id).limit(limit + 1)
    return [(a, b) for a, b in session.execute(query).all()]
