"""Ledger reads (entries, balance history) and the posting engine's bulk writes: the
account locks, entries by COPY, balances and statuses by one `UPDATE ... FROM unnest`
each, audit rows by COPY. Every write runs in the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import column as sql_column
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from db.core.sql import DriverQuery, copy_rows, in_ids, still_pending
from db.ledger import hash_chain
from db.models import Account, AuditLog, Balance, LedgerEntry
from db.transactions.repository import PLAIN_ATTRIBUTES

ENTRY_COPY_COLUMNS = (
    "id",
    "transaction_id",
    "account_id",
    "amount_minor",
    "currency",
    "balance_after_minor",
    "created_at",
    "hash",
    "prev_hash",
)
# The identity sequence of ledger_entries.id (PostgreSQL's name for it).
ENTRY_ID_SEQUENCE = "ledger_entries_id_seq"


def entries_of(
    session: Session, account_id: uuid.UUID, *, before_id: int | None, limit: int
) -> list[LedgerEntry]:
    """Newest first, keyset-paginated on the entry id."""
    query = select(LedgerEntry).where(LedgerEntry.account_id == account_id)
    if before_id is not None:
        query = query.where(LedgerEntry.id < before_id)
    return list(session.scalars(query.order_by(LedgerEntry.id.desc()).limit(limit + 1)))


def entries_of_transaction(session: Session, transaction_id: uuid.UUID) -> list[LedgerEntry]:
    return list(session.scalars(select(LedgerEntry).where(LedgerEntry.transaction_id == transaction_id)))


def balance_history(
    session: Session,
    account_id: uuid.UUID,
    *,
    since: datetime | None,
    until: datetime | None,
    after_id: int | None,
    limit: int,
) -> list[LedgerEntry]:
    """The account's entries oldest first (each carries the balance after it), with
    `since <= created_at <= until`; keyset-paginated on the entry id (limit+1 rows)."""
    query = select(LedgerEntry).where(LedgerEntry.account_id == account_id)
    if since is not None:
        query = query.where(LedgerEntry.created_at >= since)
    if until is not None:
        query = query.where(LedgerEntry.created_at <= until)
    if after_id is not None:
        query = query.where(LedgerEntry.id > after_id)
    return list(session.scalars(query.order_by(LedgerEntry.id).limit(limit + 1)))


def balance_at(session: Session, account_id: uuid.UUID, at: datetime) -> int:
    """The balance after the last entry (by id) created at or before `at`; 0 before the first."""
    query = (
        select(LedgerEntry.balance_after_minor)
        .where(LedgerEntry.account_id == account_id, LedgerEntry.created_at <= at)
        .order_by(LedgerEntry.id.desc())
        .limit(1)
    )
    return session.scalars(query).first() or 0


def changed(result: Any) -> int:
    return int(result.rowcount)


def lock_accounts(session: Session, account_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, tuple[Any, Any]]:
    """Lock accounts with their balance rows in ascending id order, the one global
    order every writer uses (db.accounts.repository.lock_in_order), a few thousand
    per statement.

    Returned as plain attribute objects carrying every column of `accounts` and of
    `balances` (what `db.ledger.posting.rules.decide` reads), not ORM instances: a
    chunk decides against thousands of them in memory and writes the balances back in
    bulk (`write_balances`), and building ORM instances would cost more than the lock.
    """
    return _accounts_with_balances(session, account_ids, lock=True)


def read_accounts(session: Session, account_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, tuple[Any, Any]]:
    """`lock_accounts` without the lock: the rows as last committed, for a posting that
    decides before it locks (db.ledger.posting.engine.post_deciding_first) and decides
    again under the lock."""
    return _accounts_with_balances(session, account_ids, lock=False)


def _accounts_and_balances(*, lock: bool) -> DriverQuery:
    """Both rows of each account in `:ids`, ascending id; the balance's columns labelled
    `balance__<name>` (both tables have `currency` and `updated_at`). A DriverQuery: a
    worker group's lock of 64 accounts spent a third of its time in SQLAlchemy's result
    set-up (py-spy)."""
    accounts, balances = Account.__table__, Balance.__table__
    statement = (
        select(*accounts.c, *(column.label(f"balance__{column.key}") for column in balances.c))
        .join_from(accounts, balances, balances.c.account_id == accounts.c.id)
        .where(in_ids(accounts.c.id))
        .order_by(accounts.c.id)
    )
    if lock:
        # NO KEY UPDATE: excludes every other writer of these rows, yet lets a
        # concurrent ingest insert lines that reference them (FK checks take KEY SHARE).
        statement = statement.with_for_update(key_share=True)
    return DriverQuery(statement)


_LOCK_ACCOUNTS = _accounts_and_balances(lock=True)
_READ_ACCOUNTS = _accounts_and_balances(lock=False)
_ACCOUNT_NAMES = tuple(column.key for column in Account.__table__.c)
_BALANCE_NAMES = tuple(column.key for column in Balance.__table__.c)


def _accounts_with_balances(
    session: Session, account_ids: Iterable[uuid.UUID], *, lock: bool
) -> dict[uuid.UUID, tuple[Any, Any]]:
    query = _LOCK_ACCOUNTS if lock else _READ_ACCOUNTS
    width = len(_ACCOUNT_NAMES)
    ordered = sorted(set(account_ids))
    found: dict[uuid.UUID, tuple[Any, Any]] = {}
    for start in range(0, len(ordered), 5000):
        for row in query.all(session, {"ids": ordered[start : start + 5000]}):
            account = SimpleNamespace(**dict(zip(_ACCOUNT_NAMES, row[:width], strict=True)))
            balance = SimpleNamespace(**dict(zip(_BALANCE_NAMES, row[width:], strict=True)))
            found[account.id] = (account, balance)
    return found


def copy_entries(session: Session, rows: list[tuple[Any, ...]], heads: dict[uuid.UUID, str | None]) -> None:
    """COPY the entries (transaction_id, account_id, amount_minor, currency,
    balance_after_minor), in posting order, each hashed onto its account's chain.

    `heads` holds each account's `balances.head_hash` as read under its lock (so the
    previous hash came with the lock, no query) and is moved forward in place; the
    caller writes it back with the balances (`write_balances`).

    The hash covers the id and created_at, so both are fixed here rather than by the
    column defaults: one statement per flush (never per entry) takes a block of ids from
    the identity sequence and the transaction's `now()`. The ids are taken after the
    accounts are locked, so every account's entries still ascend in commit order, which
    is the order the chain, the running-balance check and the readers follow; sorted, and
    handed out in posting order, they keep each account's entries in decision order.
    `now()` is what the `created_at` default would have written (the transaction's
    start), now known before the COPY.
    """
    if not rows:
        return
    created_at, ids = session.execute(
        text(f"SELECT now(), ARRAY(SELECT nextval('{ENTRY_ID_SEQUENCE}') FROM generate_series(1, :count))"),
        {"count": len(rows)},
    ).one()
    linked = hash_chain.link(rows, sorted(ids), created_at, heads)
    copy_rows(session, "ledger_entries", ENTRY_COPY_COLUMNS, linked)


def write_balances(
    session: Session, balances: dict[uuid.UUID, int], heads: dict[uuid.UUID, str | None]
) -> None:
    """Each account's balance and chain head (`heads` for every account of `balances`)."""
    if not balances:
        return
    session.execute(
        text(
            "UPDATE balances AS b SET balance_minor = v.balance, head_hash = v.head, updated_at = now() "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:balances AS bigint[]), CAST(:heads AS text[])) "
            "AS v(id, balance, head) WHERE b.account_id = v.id"
        ),
        {"ids": list(balances), "balances": list(balances.values()), "heads": [heads[a] for a in balances]},
    )


# Final statuses in one statement. By primary key: db.core.sql.still_pending says why.
# A worker's claim writes nothing (db.transactions.repository.claim_for_apply): a row it
# claimed fresh (`attempts` 0) has that attempt counted here, with its decision; a row a
# message counted (begin_attempt) or a batch line keeps its count.
WRITE_DECISIONS = text(
    "UPDATE transactions AS t SET status = v.status, failure_code = v.code, "
    "failure_message = v.message, updated_at = now(), "
    "attempts = CASE WHEN t.attempts = 0 AND t.batch_id IS NULL THEN 1 ELSE t.attempts END, "
    "completed_at = CASE WHEN v.status = 'completed' THEN now() END "
    # The setting is read by the AFTER STATEMENT trigger, so it is in place by then.
    "FROM (SELECT set_config('ledgerq.accounts_unlocked', :unlocked, true)) AS band, "
    "unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:codes AS text[]), "
    "CAST(:messages AS text[])) AS v(id, status, code, message) "
    "WHERE t.id = v.id AND t.id = ANY (CAST(:ids AS uuid[])) AND " + still_pending("t")
)
_WRITE_DECISIONS_RETURNING = text(
    WRITE_DECISIONS.text
    + " RETURNING "
    + ", ".join(f't."{column.name}" AS "{key}"' for key, column in PLAIN_ATTRIBUTES)
).columns(*(sql_column(key, column.type) for key, column in PLAIN_ATTRIBUTES))


def write_decisions(
    session: Session,
    decisions: list[tuple[uuid.UUID, str, str | None, str | None]],
    *,
    accounts_unlocked: bool = False,
) -> list[Any]:
    """Final status of each (id, status, failure_code, failure_message); only rows still
    `pending` change. Returns the changed rows as plain rows (every column under its
    attribute name, db.transactions.repository.PLAIN_ATTRIBUTES), for the events that render them: the caller checks the
    count, and no second query reads them back.

    `accounts_unlocked`: this transaction has not locked the rows' accounts yet
    (db.ledger.posting.engine.post_deciding_first). The statement tells its analytics
    trigger so through `ledgerq.accounts_unlocked` (transaction-local), which then adds
    to its backend's own shard row (migration 0019): no other transaction waits for it,
    so taking it before the account locks neither deadlocks nor queues groups."""
    if not decisions:
        return []
    ids, statuses, codes, messages = (list(column) for column in zip(*decisions, strict=True))
    return list(
        session.execute(
            _WRITE_DECISIONS_RETURNING,
            {
                "ids": ids,
                "statuses": statuses,
                "codes": codes,
                "messages": messages,
                "unlocked": "on" if accounts_unlocked else "off",
            },
        )
    )


_AUDIT_COPY_COLUMNS = ("action", "entity_type", "entity_id", "data", "request_id")


def insert_audit_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Audit rows (action, entity_type, entity_id, data, request_id) in one COPY: the
    ORM's bulk insert sent one INSERT per row (psycopg's executemany), 7 % of a worker
    group's time for 100 rows."""
    copy_rows(
        session,
        AuditLog.__tablename__,
        _AUDIT_COPY_COLUMNS,
        ((r["action"], r["entity_type"], r["entity_id"], Jsonb(r["data"]), r["request_id"]) for r in rows),
    )
