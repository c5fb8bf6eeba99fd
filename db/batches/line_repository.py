"""Queries of a batch's lines: the bulk writes of ingest and of the chunk posting, the
locks a chunk takes, and the reads of items and results.

Accepted lines are transactions (`batch_id`, `batch_line`); rejected ones are rows of
`batch_rejected_lines`. Bulk rows go in with PostgreSQL COPY (psycopg's `cursor.copy`)
on the session's own connection, inside the caller's transaction: a block of thousands
of rows is one round trip, and a rollback takes them back like any other statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import BigInteger, String, cast, func, null, select, text, union_all, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Session

from db.models import Account, Balance, BatchRejectedLine, Transaction

TRANSACTION_COPY_COLUMNS = (
    "id",
    "type",
    "status",
    "from_account_id",
    "to_account_id",
    "amount_minor",
    "currency",
    "reference",
    "created_by",
    "request_id",
    "scheduled_for",
    "batch_id",
    "batch_line",
)


REJECTED_COPY_COLUMNS = ("batch_id", "line_no", "code", "reason", "raw")


ENTRY_COPY_COLUMNS = ("transaction_id", "account_id", "amount_minor", "currency", "balance_after_minor")


def _copy(session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    session.flush()
    dbapi = session.connection().connection.driver_connection
    assert dbapi is not None
    with dbapi.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def changed(result: Any) -> int:
    """Rows a DML statement changed (`execute` is typed as returning a plain Result)."""
    return int(result.rowcount)


def analyze(session: Session) -> None:
    """Fresh planner statistics after a big ingest (autovacuum would get there later),
    so item pages use the (batch_id, batch_line) index instead of sorting the batch."""
    session.execute(text("ANALYZE transactions, batch_rejected_lines"))


def accounts_by_id(session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Account]:
    return {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(list(ids))))}


def copy_transactions(session: Session, rows: Iterable[Sequence[Any]]) -> None:
    _copy(session, "transactions", TRANSACTION_COPY_COLUMNS, rows)


def copy_rejected(session: Session, rows: Iterable[Sequence[Any]]) -> None:
    _copy(
        session,
        "batch_rejected_lines",
        REJECTED_COPY_COLUMNS,
        (tuple(row[:4]) + (Jsonb(row[4]) if row[4] is not None else None,) for row in rows),
    )


def mark_unfinished(
    session: Session, batch_id: uuid.UUID, *, status: str, message: str, from_line: int = 0
) -> int:
    """Every not-yet-decided transaction of the batch (from `from_line` on) becomes
    `status` (cancelled, dead_lettered) with `message`; returns how many."""
    query = update(Transaction).where(
        Transaction.batch_id == batch_id, Transaction.status.in_(("pending", "scheduled"))
    )
    if from_line:
        query = query.where(Transaction.batch_line >= from_line)
    return changed(
        session.execute(query.values(status=status, failure_message=message[:2000], updated_at=func.now()))
    )


def reopen_dead_lettered(session: Session, batch_id: uuid.UUID) -> list[int]:
    """The batch's dead-lettered lines back to `pending`; their line numbers."""
    return list(
        session.scalars(
            update(Transaction)
            .where(Transaction.batch_id == batch_id, Transaction.status == "dead_lettered")
            .values(status="pending", failure_message=None, updated_at=func.now())
            .returning(Transaction.batch_line)
        )
    )


def release_scheduled(session: Session, batch_id: uuid.UUID) -> int:
    return changed(
        session.execute(
            update(Transaction)
            .where(Transaction.batch_id == batch_id, Transaction.status == "scheduled")
            .values(status="pending", updated_at=func.now())
        )
    )


_ITEM_COLUMNS = (
    Transaction.batch_line.label("line_no"),
    Transaction.id,
    Transaction.type,
    Transaction.status,
    Transaction.from_account_id,
    Transaction.to_account_id,
    Transaction.amount_minor,
    Transaction.currency,
)


def lock_items(session: Session, batch_id: uuid.UUID, *, lines: tuple[int, int]) -> list[Any]:
    """The accepted lines in the window [lines[0], lines[1]), in line order, with their
    transaction rows locked. A window of line numbers, not LIMIT: its cost stays bounded
    whatever the planner believes about the table right after a million rows arrived."""
    low, high = lines
    return list(
        session.execute(
            select(*_ITEM_COLUMNS)
            .where(
                Transaction.batch_id == batch_id, Transaction.batch_line >= low, Transaction.batch_line < high
            )
            .order_by(Transaction.batch_line)
            .with_for_update(key_share=True)  # ledger entries' FK checks may share it
        ).all()
    )


def lock_accounts(session: Session, account_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, tuple[Any, Any]]:
    """Lock accounts with their balance rows in ascending id order, the one global
    order every writer uses (db.accounts.repository.lock_in_order), a few thousand
    per statement.

    Returned as plain attribute objects carrying every column of `accounts` and of
    `balances` (what `db.ledger.posting.decide` reads of the ORM rows), not ORM instances: a
    chunk decides against thousands of them in memory and writes the balances back in
    bulk (`write_balances`), and building ORM instances would cost more than the lock.
    """
    accounts, balances = Account.__table__, Balance.__table__
    width = len(accounts.c)
    ordered = sorted(set(account_ids))
    locked: dict[uuid.UUID, tuple[Any, Any]] = {}
    for start in range(0, len(ordered), 5000):
        rows = session.execute(
            select(*accounts.c, *balances.c)
            .join_from(accounts, balances, balances.c.account_id == accounts.c.id)
            .where(accounts.c.id.in_(ordered[start : start + 5000]))
            .order_by(accounts.c.id)
            # NO KEY UPDATE: excludes every other writer of these rows, yet lets a
            # concurrent ingest insert lines that reference them (FK checks take KEY SHARE).
            .with_for_update(key_share=True)
        )
        account_names = [c.key for c in accounts.c]
        balance_names = [c.key for c in balances.c]
        for row in rows:
            account = SimpleNamespace(**dict(zip(account_names, row[:width], strict=True)))
            balance = SimpleNamespace(**dict(zip(balance_names, row[width:], strict=True)))
            locked[account.id] = (account, balance)
    return locked


def copy_entries(session: Session, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        _copy(session, "ledger_entries", ENTRY_COPY_COLUMNS, rows)


def write_balances(session: Session, balances: dict[uuid.UUID, int]) -> None:
    if not balances:
        return
    session.execute(
        text(
            "UPDATE balances AS b SET balance_minor = v.balance, updated_at = now() "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:balances AS bigint[])) AS v(id, balance) "
            "WHERE b.account_id = v.id"
        ),
        {"ids": list(balances), "balances": list(balances.values())},
    )


def write_decisions(session: Session, decisions: list[tuple[uuid.UUID, str, str | None, str | None]]) -> int:
    """Final status of each (id, status, failure_code, failure_message); only rows still
    `pending` change, and the count tells the caller whether all of them did."""
    if not decisions:
        return 0
    ids, statuses, codes, messages = (list(column) for column in zip(*decisions, strict=True))
    return changed(
        session.execute(
            text(
                "UPDATE transactions AS t SET status = v.status, failure_code = v.code, "
                "failure_message = v.message, updated_at = now(), "
                "completed_at = CASE WHEN v.status = 'completed' THEN now() END "
                "FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:codes AS text[]), "
                "CAST(:messages AS text[])) AS v(id, status, code, message) "
                "WHERE t.id = v.id AND t.status = 'pending'"
            ),
            {"ids": ids, "statuses": statuses, "codes": codes, "messages": messages},
        )
    )


_NULL_UUID = cast(null(), PG_UUID(as_uuid=True))


_NULL_TEXT = cast(null(), String)


_NULL_BIGINT = cast(null(), BigInteger)


def item_page(
    session: Session,
    batch_id: uuid.UUID,
    *,
    status: str | None,
    after_line: int | None,
    limit: int,
    before_line: int | None = None,
) -> list[Any]:
    """Every line's outcome in line order: accepted lines from `transactions`, rejected
    ones from `batch_rejected_lines` (merged). Plain rows, not ORM objects, so
    results.csv streams a million of them quickly. `status` is an item status
    (pending covers scheduled lines too)."""
    parts = []
    if status != "rejected":
        accepted = select(
            Transaction.batch_line.label("line_no"),
            Transaction.id.label("transaction_id"),
            _NULL_TEXT.label("reject_code"),
            _NULL_TEXT.label("reject_reason"),
            cast(null(), JSONB).label("raw"),
            Transaction.type,
            Transaction.status,
            Transaction.from_account_id,
            Transaction.to_account_id,
            Transaction.amount_minor,
            Transaction.currency,
            Transaction.reference,
            Transaction.failure_code,
            Transaction.failure_message,
        ).where(Transaction.batch_id == batch_id)
        if after_line is not None:
            accepted = accepted.where(Transaction.batch_line > after_line)
        if before_line is not None:
            accepted = accepted.where(Transaction.batch_line < before_line)
        if status == "pending":
            accepted = accepted.where(Transaction.status.in_(("pending", "scheduled")))
        elif status:
            accepted = accepted.where(Transaction.status == status)
        parts.append(accepted.order_by(Transaction.batch_line).limit(limit + 1))
    if status in (None, "rejected"):
        rejected = select(
            BatchRejectedLine.line_no,
            _NULL_UUID.label("transaction_id"),
            BatchRejectedLine.code.label("reject_code"),
            BatchRejectedLine.reason.label("reject_reason"),
            BatchRejectedLine.raw,
            _NULL_TEXT.label("type"),
            _NULL_TEXT.label("status"),
            _NULL_UUID.label("from_account_id"),
            _NULL_UUID.label("to_account_id"),
            _NULL_BIGINT.label("amount_minor"),
            _NULL_TEXT.label("currency"),
            _NULL_TEXT.label("reference"),
            _NULL_TEXT.label("failure_code"),
            _NULL_TEXT.label("failure_message"),
        ).where(BatchRejectedLine.batch_id == batch_id)
        if after_line is not None:
            rejected = rejected.where(BatchRejectedLine.line_no > after_line)
        if before_line is not None:
            rejected = rejected.where(BatchRejectedLine.line_no < before_line)
        parts.append(rejected.order_by(BatchRejectedLine.line_no).limit(limit + 1))
    merged = union_all(*(part.subquery().select() for part in parts)).subquery()
    return list(session.execute(select(merged).order_by(merged.c.line_no).limit(limit + 1)).all())
