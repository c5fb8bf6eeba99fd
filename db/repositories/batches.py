"""Queries of batches, their items and uploads, including the bulk writes.

Bulk rows go in with PostgreSQL COPY (psycopg's `cursor.copy`) on the session's own
connection, inside the caller's transaction: a block of thousands of rows is one
round trip, and a rollback takes them back like any other statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import BigInteger, String, cast, func, null, select, text, union_all, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Session

from db.models import Account, Balance, Batch, BatchRejectedLine, BatchUpload, Transaction

# pg_advisory_xact_lock's first key: "this lock is about a batch" (the second is the
# batch id's hash), so it cannot collide with advisory locks taken for other reasons.
BATCH_LOCK_CLASS = 6006

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


# --- batches --------------------------------------------------------------------------


def get(session: Session, batch_id: uuid.UUID) -> Batch | None:
    return session.get(Batch, batch_id, populate_existing=True)


def get_for_update(session: Session, batch_id: uuid.UUID) -> Batch | None:
    """FOR NO KEY UPDATE: an ingest inserting this batch's lines holds KEY SHARE on the
    row (the FK check) for as long as it runs; a cancel must not wait for it."""
    return session.scalars(
        select(Batch)
        .where(Batch.id == batch_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).one_or_none()


def try_lock(session: Session, batch_id: uuid.UUID) -> bool:
    """Transaction-scoped advisory lock: one worker at a time ingests or applies a
    given batch; a duplicate delivery that finds it taken simply steps aside."""
    return bool(
        session.execute(
            text("SELECT pg_try_advisory_xact_lock(:cls, hashtext(:id))"),
            {"cls": BATCH_LOCK_CLASS, "id": str(batch_id)},
        ).scalar_one()
    )


def insert_batch(session: Session, values: dict[str, Any]) -> uuid.UUID | None:
    """None when a unique key (idempotency key, or the same content of a live batch)
    already exists; a concurrent twin blocks until the first commits, then sees it."""
    return session.execute(
        insert(Batch).values(**values).on_conflict_do_nothing().returning(Batch.id)
    ).scalar_one_or_none()


def by_idempotency_key(session: Session, created_by: uuid.UUID, key: str) -> Batch | None:
    return session.scalars(
        select(Batch).where(Batch.created_by == created_by, Batch.idempotency_key == key)
    ).one_or_none()


def live_by_content(session: Session, sha256: str) -> Batch | None:
    """The batch holding this content's uniqueness (one that did not end without
    moving money: failed and cancelled batches release their content)."""
    return session.scalars(
        select(Batch).where(Batch.content_sha256 == sha256, Batch.status.not_in(("failed", "cancelled")))
    ).first()


def latest_by_content(session: Session, sha256: str) -> Batch | None:
    return session.scalars(
        select(Batch).where(Batch.content_sha256 == sha256).order_by(Batch.seq.desc()).limit(1)
    ).first()


def list_batches(
    session: Session, *, status: str | None, created_by: uuid.UUID | None, before_seq: int | None, limit: int
) -> list[Batch]:
    query = select(Batch)
    if status:
        query = query.where(Batch.status == status)
    if created_by:
        query = query.where(Batch.created_by == created_by)
    if before_seq is not None:
        query = query.where(Batch.seq < before_seq)
    return list(session.scalars(query.order_by(Batch.seq.desc()).limit(limit + 1)))


def mark_validating(session: Session, batch_id: uuid.UUID) -> None:
    session.execute(
        update(Batch).where(Batch.id == batch_id, Batch.status == "received").values(status="validating")
    )


def advance_cursor(
    session: Session, batch_id: uuid.UUID, *, expected: int, next_line: int, values: dict[str, Any]
) -> bool:
    """Move the processing cursor only if nobody moved it meanwhile (compare-and-set)."""
    return bool(
        session.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.next_line == expected, Batch.status == "processing")
            .values(next_line=next_line, started_at=func.coalesce(Batch.started_at, func.now()), **values)
        ).rowcount
    )


def claim_due_scheduled(session: Session, *, now: datetime, limit: int) -> list[uuid.UUID]:
    return list(
        session.scalars(
            select(Batch.id)
            .where(Batch.status == "scheduled", Batch.scheduled_for <= now)
            .order_by(Batch.scheduled_for)
            .limit(limit)
            .with_for_update(skip_locked=True, key_share=True)
        )
    )


def stale(
    session: Session, *, statuses: Sequence[str], idle_s: float, limit: int
) -> list[tuple[uuid.UUID, int]]:
    """Batches in `statuses` nobody touched for `idle_s` (their message was lost)."""
    rows = session.execute(
        select(Batch.id, Batch.next_line)
        .where(
            Batch.status.in_(statuses),
            Batch.updated_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, idle_s),
        )
        .order_by(Batch.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if rows:
        session.execute(update(Batch).where(Batch.id.in_([r[0] for r in rows])).values(updated_at=func.now()))
    return [(r[0], r[1]) for r in rows]


# --- uploads --------------------------------------------------------------------------


def add_upload_part(session: Session, batch_id: uuid.UUID, part: int, data: bytes) -> None:
    session.execute(insert(BatchUpload).values(batch_id=batch_id, part=part, data=data))


def upload_parts(session: Session, batch_id: uuid.UUID) -> Iterator[bytes]:
    """The stored upload, one part per query so at most one part is in memory."""
    part = 0
    while True:
        data = session.execute(
            select(BatchUpload.data).where(BatchUpload.batch_id == batch_id, BatchUpload.part == part)
        ).scalar_one_or_none()
        if data is None:
            return
        yield bytes(data)
        part += 1


def analyze(session: Session) -> None:
    """Fresh planner statistics after a big ingest (autovacuum would get there later),
    so item pages use the (batch_id, batch_line) index instead of sorting the batch."""
    session.execute(text("ANALYZE transactions, batch_rejected_lines"))


def has_upload(session: Session, batch_id: uuid.UUID) -> bool:
    return (
        session.execute(select(BatchUpload.part).where(BatchUpload.batch_id == batch_id).limit(1)).first()
        is not None
    )


def delete_upload(session: Session, batch_id: uuid.UUID) -> None:
    session.execute(BatchUpload.__table__.delete().where(BatchUpload.batch_id == batch_id))


# --- items ----------------------------------------------------------------------------


def accounts_by_id(session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Account]:
    return {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(list(ids))))}


def copy_transactions(session: Session, rows: Iterable[Sequence[Any]]) -> None:
    _copy(session, "transactions", TRANSACTION_COPY_COLUMNS, rows)


def copy_rejected(session: Session, rows: Iterable[Sequence[Any]]) -> None:
    _copy(
        session,
        "batch_rejected_lines",
        REJECTED_COPY_COLUMNS,
        (row[:4] + (Jsonb(row[4]) if row[4] is not None else None,) for row in rows),
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
    return session.execute(
        query.values(status=status, failure_message=message[:2000], updated_at=func.now())
    ).rowcount


def release_scheduled(session: Session, batch_id: uuid.UUID) -> int:
    return session.execute(
        update(Transaction)
        .where(Transaction.batch_id == batch_id, Transaction.status == "scheduled")
        .values(status="pending", updated_at=func.now())
    ).rowcount


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


def item_accounts(session: Session, batch_id: uuid.UUID) -> set[uuid.UUID]:
    rows = session.execute(
        select(Transaction.from_account_id, Transaction.to_account_id).where(Transaction.batch_id == batch_id)
    )
    return {account_id for row in rows for account_id in row}


def lock_accounts(session: Session, account_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, tuple[Any, Any]]:
    """Lock accounts with their balance rows in ascending id order, the one global
    order every writer uses (db/repositories/accounts.lock_in_order), a few thousand
    per statement.

    Returned as plain attribute objects carrying every column of `accounts` and of
    `balances` (what `db.ledger.decide` reads of the ORM rows), not ORM instances: a
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
    return session.execute(
        text(
            "UPDATE transactions AS t SET status = v.status, failure_code = v.code, "
            "failure_message = v.message, updated_at = now(), "
            "completed_at = CASE WHEN v.status = 'completed' THEN now() END "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:codes AS text[]), "
            "CAST(:messages AS text[])) AS v(id, status, code, message) "
            "WHERE t.id = v.id AND t.status = 'pending'"
        ),
        {"ids": ids, "statuses": statuses, "codes": codes, "messages": messages},
    ).rowcount


# --- reading results ------------------------------------------------------------------

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
