from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, bindparam, case, func, literal, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, aliased

from db.core.sql import DriverQuery, constant, in_ids
from db.ledger.limits import USAGE_TYPES, Usage
from db.models import Account, Transaction


def get(session: Session, transaction_id: uuid.UUID) -> Transaction | None:
    return session.get(Transaction, transaction_id)


def get_for_update(session: Session, transaction_id: uuid.UUID) -> Transaction | None:
    return session.scalars(
        select(Transaction)
        .where(Transaction.id == transaction_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


_INEFFECTIVE = ("failed", "cancelled")  # reversals that moved nothing and block nothing


def _effective(status: Any) -> ColumnElement[bool]:
    """`status NOT IN ('failed', 'cancelled')` in constants: the only index on
    `reverses` is partial on that predicate (see db/core/sql.py `constant`)."""
    return status.not_in([constant(value) for value in _INEFFECTIVE])


def _with_parties() -> Any:
    # Built once: aliasing an entity per call cost more CPU than the query (cProfile:
    # 60 column proxies and event registrations per GET).
    source, target, reversal = aliased(Account), aliased(Account), aliased(Transaction)
    reversal_id = (
        select(reversal.id)
        .where(reversal.reverses == Transaction.id, _effective(reversal.status))
        .scalar_subquery()
    )
    return (
        select(Transaction, source.owner_id, target.owner_id, reversal_id)
        .join(source, source.id == Transaction.from_account_id)
        .join(target, target.id == Transaction.to_account_id)
        .where(Transaction.id == bindparam("transaction_id"))
    )


_WITH_PARTIES = _with_parties()


def open_created_by(session: Session, user_id: uuid.UUID, statuses: tuple[str, ...]) -> list[Transaction]:
    """The user's own transactions (not batch lines) in `statuses`, locked; one the
    worker is applying right now (row locked) is skipped: it was in flight already."""
    return list(
        session.scalars(
            select(Transaction)
            .where(
                Transaction.created_by == user_id,
                Transaction.status.in_(statuses),
                Transaction.batch_id.is_(None),
            )
            .with_for_update(skip_locked=True)
        )
    )


def reversal_of(session: Session, transaction_id: uuid.UUID) -> Transaction | None:
    """The effective reversal of `transaction_id` (any status but failed/cancelled)."""
    return session.scalars(
        select(Transaction).where(Transaction.reverses == transaction_id, _effective(Transaction.status))
    ).one_or_none()


class Parties(NamedTuple):
    """A transaction with what deciding who may see it needs."""

    transaction: Transaction
    source_owner: uuid.UUID | None
    target_owner: uuid.UUID | None
    reversal_id: uuid.UUID | None  # its effective reversal's


def with_parties(session: Session, transaction_id: uuid.UUID) -> Parties | None:
    """The transaction, the owners of its source and target accounts, and its effective
    reversal's id: what showing one transaction to someone needs, in one query."""
    row = session.execute(_WITH_PARTIES, {"transaction_id": transaction_id}).one_or_none()
    return Parties(*row) if row is not None else None


# Every column of a transaction under its ORM attribute name (`metadata_`), so a plain
# row renders like the object (db/events/render.py) without an ORM load. Table columns,
# not the entity's attributes: a statement of these runs without the ORM's compile and
# loading steps.
PLAIN_ATTRIBUTES = tuple((key, prop.columns[0]) for key, prop in Transaction.__mapper__.column_attrs.items())
_PLAIN_COLUMNS = tuple(column.label(key) for key, column in PLAIN_ATTRIBUTES)


def _shown() -> Any:
    """`_WITH_PARTIES` as plain labelled columns: the row, `source_owner`, `target_owner`
    and `reversal_id`."""
    table, accounts = Transaction.__table__, Account.__table__
    source, target, reversal = accounts.alias("source"), accounts.alias("target"), table.alias("reversal")
    reversal_id = (
        select(reversal.c.id)
        .where(reversal.c.reverses == table.c.id, _effective(reversal.c.status))
        .scalar_subquery()
    )
    return (
        select(
            *_PLAIN_COLUMNS,
            source.c.owner_id.label("source_owner"),
            target.c.owner_id.label("target_owner"),
            reversal_id.label("reversal_id"),
        )
        .join_from(table, source, source.c.id == table.c.from_account_id)
        .join(target, target.c.id == table.c.to_account_id)
        .where(table.c.id == bindparam("transaction_id"))
    )


_SHOWN = DriverQuery(_shown())


def shown_row(session: Session, transaction_id: uuid.UUID) -> Any | None:
    """`with_parties` as one read-only row (the transaction's columns by attribute name,
    plus `source_owner`, `target_owner`, `reversal_id`), on the session's connection:
    the path clients poll pays neither the ORM's statement handling nor an instance
    load (together a fifth of a GET's CPU in py-spy), nor SQLAlchemy's execute path
    (`DriverQuery`)."""
    return _SHOWN.one_or_none(session, {"transaction_id": transaction_id})


_STATUS = select(Transaction.__table__.c.status).where(
    Transaction.__table__.c.id == bindparam("transaction_id")
)


def status_of(session: Session, transaction_id: uuid.UUID) -> str | None:
    """The status alone (a long-poll's recheck), by the statement built once above."""
    return session.connection().execute(_STATUS, {"transaction_id": transaction_id}).scalar_one_or_none()


def reversed_by(session: Session, transaction_ids: list[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """original id -> its reversal's id, for those of `transaction_ids` that have one:
    one query for a whole page (the unique index on `reverses` serves it)."""
    if not transaction_ids:
        return {}
    rows = session.execute(
        select(Transaction.reverses, Transaction.id).where(
            Transaction.reverses.in_(transaction_ids), _effective(Transaction.status)
        )
    ).all()
    return {original: reversal for original, reversal in rows if original is not None}


def by_idempotency_key(session: Session, created_by: uuid.UUID, key: str) -> Transaction | None:
    return session.scalars(
        select(Transaction).where(Transaction.created_by == created_by, Transaction.idempotency_key == key)
    ).one_or_none()


def history(
    session: Session,
    *,
    owner_id: uuid.UUID | None,
    account_id: uuid.UUID | None,
    status: str | None,
    type_: str | None,
    batch_id: uuid.UUID | None,
    created_from: datetime | None,
    created_to: datetime | None,
    before_seq: int | None,
    limit: int,
) -> list[Transaction]:
    """Newest first, keyset-paginated on `seq`; `owner_id` restricts to transactions
    touching that user's accounts."""
    query = select(Transaction)
    if owner_id is not None:
        own = select(Account.id).where(Account.owner_id == owner_id)
        query = query.where(or_(Transaction.from_account_id.in_(own), Transaction.to_account_id.in_(own)))
    if account_id is not None:
        query = query.where(
            or_(Transaction.from_account_id == account_id, Transaction.to_account_id == account_id)
        )
    if status:
        query = query.where(Transaction.status == status)
    if type_:
        query = query.where(Transaction.type == type_)
    if batch_id:
        query = query.where(Transaction.batch_id == batch_id)
    if created_from:
        query = query.where(Transaction.created_at >= created_from)
    if created_to:
        query = query.where(Transaction.created_at < created_to)
    if before_seq is not None:
        query = query.where(Transaction.seq < before_seq)
    return list(session.scalars(query.order_by(Transaction.seq.desc()).limit(limit + 1)))


def claim_stale_pending(
    session: Session,
    *,
    stale_after_s: float,
    min_backoff_s: float,
    max_backoff_s: float,
    limit: int,
) -> list[uuid.UUID]:
    """Lock `pending` rows that nothing is working on and mark them touched.

    "Nothing is working on it" means untouched for `stale_after_s`, plus, for a row a
    worker already tried (`attempts` > 0), the longest backoff Dramatiq may be waiting
    before its next retry: the sweeper must not multiply a retrying message.
    SKIP LOCKED: rows a worker is applying right now (or another sweeper is claiming)
    are skipped rather than waited for.
    """
    retry_wait = case(
        (Transaction.attempts == 0, literal(0.0)),
        # Dramatiq's wait after the n-th failed attempt is min_backoff * 2**(n-1), jittered
        # up to twice that (dramatiq.common.compute_backoff), capped near max_backoff.
        else_=func.least(literal(min_backoff_s) * func.power(2, Transaction.attempts), max_backoff_s),
    )
    idle_for = func.extract("epoch", func.now() - Transaction.updated_at)
    ids = list(
        session.scalars(
            select(Transaction.id)
            .where(Transaction.status == constant("pending"), idle_for > literal(stale_after_s) + retry_wait)
            # Batch lines are applied by their chunk (in file order, all-or-nothing when
            # atomic); workers.batches.sweep_stalled_batches re-sends a lost chunk instead.
            .where(Transaction.batch_id.is_(None))
            .order_by(Transaction.updated_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if ids:
        session.execute(update(Transaction).where(Transaction.id.in_(ids)).values(updated_at=func.now()))
    return ids


def claim_due_scheduled(session: Session, *, now: datetime, limit: int) -> list[uuid.UUID]:
    """Lock due `scheduled` rows (SKIP LOCKED) and release them to `pending`."""
    ids = list(
        session.scalars(
            select(Transaction.id)
            .where(Transaction.status == constant("scheduled"), Transaction.scheduled_for <= now)
            .where(Transaction.batch_id.is_(None))  # a scheduled batch is released as a whole
            .order_by(Transaction.scheduled_for)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if ids:
        session.execute(update(Transaction).where(Transaction.id.in_(ids)).values(status="pending"))
    return ids


def outgoing_usage(
    session: Session,
    account_id: uuid.UUID,
    *,
    include_pending: bool,
    excluding: Sequence[uuid.UUID] = (),
) -> Usage:
    """What `account_id` sent by transfer or debit: the amount this UTC day and the count
    in the last 60 seconds, by completion time; with `include_pending`, plus every pending
    amount and the pending requests of the last 60 seconds (the request-time view).

    The worker calls it (without pending) while holding the account's row lock, under
    which every completion from the account is committed: its answer cannot be raced.
    `excluding`: rows this transaction has marked decided but whose money it is only now
    moving (db.ledger.posting.engine.post_deciding_first), which the posting counts
    itself as it decides them.
    """
    now = func.now()
    day_start = func.timezone("UTC", func.date_trunc("day", func.timezone("UTC", now)))
    minute_start = now - literal(timedelta(seconds=60))
    # Constants: ix_transactions_completed_from and ix_transactions_pending_from are
    # partial on these (db/core/sql.py).
    completed = Transaction.status == constant("completed")
    pending = Transaction.status == constant("pending")
    # A `held` hold counts as sent (db/ledger/limits.py), by its request time.
    held = Transaction.status == constant("held")
    amount_today: ColumnElement[int] = func.coalesce(
        func.sum(Transaction.amount_minor).filter(completed, Transaction.completed_at >= day_start), 0
    ) + func.coalesce(func.sum(Transaction.amount_minor).filter(held, Transaction.created_at >= day_start), 0)
    count_minute: ColumnElement[int] = func.count().filter(
        completed, Transaction.completed_at > minute_start
    ) + func.count().filter(held, Transaction.created_at > minute_start)
    if include_pending:
        amount_today = amount_today + func.coalesce(func.sum(Transaction.amount_minor).filter(pending), 0)
        count_minute = count_minute + func.count().filter(pending, Transaction.created_at > minute_start)
    row = session.execute(
        select(amount_today, count_minute).where(
            Transaction.from_account_id == account_id,
            Transaction.type.in_(USAGE_TYPES),
            Transaction.id.not_in(excluding) if excluding else literal(True),
            or_(
                and_(completed, Transaction.completed_at >= func.least(day_start, minute_start)),
                and_(held, Transaction.created_at >= func.least(day_start, minute_start)),
                pending if include_pending else literal(False),
            ),
        )
    ).one()
    return Usage(daily_outgoing_minor=int(row[0]), minute_outgoing_count=int(row[1]))


def mark_dead_lettered(session: Session, transaction_id: uuid.UUID, reason: str) -> bool:
    """`pending -> dead_lettered` with the reason; False when the row was not pending."""
    result = session.execute(
        update(Transaction)
        .where(Transaction.id == transaction_id, Transaction.status == "pending")
        .values(status="dead_lettered", last_error=reason[:2000])
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]  # an UPDATE returns a CursorResult


def mark_pending_again(session: Session, transaction_id: uuid.UUID) -> None:
    """`dead_lettered -> pending` with a fresh attempt count (an operator's retry)."""
    session.execute(
        update(Transaction).where(Transaction.id == transaction_id).values(status="pending", attempts=0)
    )


def last_errors(session: Session, transaction_ids: set[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    """id -> last_error for the rows of `transaction_ids`."""
    if not transaction_ids:
        return {}
    rows = session.execute(
        select(Transaction.id, Transaction.last_error).where(Transaction.id.in_(transaction_ids))
    ).all()
    return {tx_id: error for tx_id, error in rows}


def dead_lettered(session: Session, limit: int = 1000) -> list[tuple[uuid.UUID, datetime, str | None]]:
    """(id, updated_at, last_error) of `dead_lettered` rows, the latest first."""
    rows = session.execute(
        select(Transaction.id, Transaction.updated_at, Transaction.last_error)
        .where(Transaction.status == "dead_lettered")
        .order_by(Transaction.updated_at.desc())
        .limit(limit)
    ).all()
    return [(tx_id, updated_at, error) for tx_id, updated_at, error in rows]


def dead_lettered_ids(session: Session) -> list[uuid.UUID]:
    return list(session.scalars(select(Transaction.id).where(Transaction.status == "dead_lettered")))


_POSTING_COLUMNS = (
    Transaction.id,
    Transaction.seq,
    Transaction.type,
    Transaction.status,
    Transaction.from_account_id,
    Transaction.to_account_id,
    Transaction.amount_minor,
    Transaction.currency,
    Transaction.request_id,
    Transaction.schedule_id,
    Transaction.captures,  # a capture's hold (db/ledger/posting/holds.py)
    Transaction.batch_id,  # batch lines are posted lock-first (engine.decides_first)
    # An exchange's figures (db/ledger/posting/exchange.py); NULL on anything else.
    Transaction.to_amount_minor,
    Transaction.to_currency,
    Transaction.fee_minor,
)


def lock_for_posting(session: Session, transaction_ids: list[uuid.UUID]) -> list[Any]:
    """Lock transaction rows (ascending id: one order for every group, so two workers'
    overlapping groups wait instead of deadlocking) and return them as plain rows, oldest
    (`seq`) first: the order the posting engine decides them in.

    FOR NO KEY UPDATE excludes every other decider (workers, cancel's FOR UPDATE) yet
    lets the ledger entries' foreign-key checks share the row."""
    rows = _LOCK_FOR_POSTING.all(session, {"ids": transaction_ids})
    return sorted(rows, key=lambda row: row.seq)


# A DriverQuery (db.core.sql): SQLAlchemy's execute path cost more than the lock.
_LOCK_FOR_POSTING = DriverQuery(
    select(*(Transaction.__table__.c[column.key] for column in _POSTING_COLUMNS))
    .where(in_ids(Transaction.__table__.c.id))
    .order_by(Transaction.__table__.c.id)
    .with_for_update(key_share=True)
)


# A message's own row: its status, and the row itself locked if pending and nobody
# holds it. The head of both statements below.
_OWN_ROW = """
    WITH own_row AS (
        SELECT status FROM transactions WHERE id = :own
    ), own AS (
        SELECT id FROM transactions
        WHERE id = :own AND status = 'pending'
        FOR NO KEY UPDATE SKIP LOCKED
    ), """

CLAIM = text(
    _OWN_ROW
    + """fresh AS (
        SELECT id FROM transactions
        WHERE status = 'pending' AND attempts = 0 AND batch_id IS NULL AND id <> :own
        ORDER BY seq
        LIMIT :others
        FOR NO KEY UPDATE SKIP LOCKED
    )
    SELECT (SELECT status FROM own_row) AS status,
           ARRAY(SELECT id FROM own UNION ALL SELECT id FROM fresh) AS claimed
    """
)


def claim_for_apply(
    connection: Connection, own_id: uuid.UUID, *, size: int
) -> tuple[str | None, list[uuid.UUID]]:
    """The own row's status (None: no such row) and a claimed group of up to `size`: the
    own row (if it is `pending` and no one holds it) and the oldest never-tried pending
    transfers, locked.

    The fresh rows are claimed whatever the own row's status: the caller's begin_attempt
    saw it `pending`, and if another group decided it since, this message has still
    cleared the wake-up flag (workers/wake_ups.py), so the rows whose senders coalesced
    onto it are this claim's to take. Claiming them only while the own row was pending
    left them with no wake-up at all (seen as holds stuck `pending` with 0 attempts).

    Nothing is written: a fresh row's attempt is counted by the statement that writes
    its decision (db.ledger.repository.WRITE_DECISIONS: `attempts` 0 becomes 1), the own
    row's was counted by `begin_attempt`. An UPDATE here cost a second index-wide
    rewrite of every row, and made the decision's UPDATE re-check each row's foreign
    keys (a row version the same transaction wrote is checked whatever changed).

    Run it inside the transaction that applies the group: the claimed rows stay locked
    until the group commits. A claim committed on its own left the rows unlocked while
    the group waited for locks, and the rows' own wake-ups claimed them a second time
    (two attempts for one decision, seen under load).

    SKIP LOCKED: rows another worker is claiming or applying are left to it. A row once
    tried (`attempts` > 0) is claimed only by its own message (a redelivery, a retry, the
    sweeper's re-send), which keeps Dramatiq's retry and dead-letter bookkeeping per row.
    Exactly-once does not rest on this: the applier re-locks the rows and decides only
    those still `pending`."""
    row = connection.execute(CLAIM, {"own": own_id, "others": max(0, size - 1)}).one()
    return row.status, list(row.claimed or [])


_BEGIN_ATTEMPT = text(
    _OWN_ROW
    + """counted AS (
        UPDATE transactions AS t SET attempts = t.attempts + 1, updated_at = now()
        FROM own WHERE t.id = own.id AND t.status = 'pending'
        RETURNING t.id
    )
    SELECT (SELECT status FROM own_row) AS status, EXISTS (SELECT 1 FROM counted) AS counted
    """
)


def begin_attempt(connection: Connection, own_id: uuid.UUID) -> tuple[str | None, bool]:
    """A message's first statement, in autocommit: the own row's status (None: no such
    row) and whether this message's attempt was counted on it: only when the row is
    `pending` and nobody holds it (a group that claimed it counts the attempt with its
    decision, so one decision is never counted twice). Committed at once, so an attempt
    that crashes the worker stays counted. For a decided row this one read is all a
    wake-up costs."""
    row = connection.execute(_BEGIN_ATTEMPT, {"own": own_id}).one()
    return row.status, bool(row.counted)


def count_failed_attempts(session: Session, transaction_ids: list[uuid.UUID]) -> None:
    """One more attempt for each still-pending row of a group whose transaction rolled
    back (no decision, so no count): tried rows are then left to their own messages."""
    session.execute(
        update(Transaction)
        .where(Transaction.id.in_(transaction_ids), Transaction.status == "pending")
        .values(attempts=Transaction.attempts + 1, updated_at=func.now())
    )


CLAIM_FRESH = text(
    """
    SELECT id FROM transactions
    WHERE status = 'pending' AND attempts = 0 AND batch_id IS NULL
    ORDER BY seq
    LIMIT :size
    FOR NO KEY UPDATE SKIP LOCKED
    """
)


def claim_fresh(connection: Connection, *, size: int) -> list[uuid.UUID]:
    """Up to `size` of the oldest never-tried pending transfers, locked (their attempt
    is counted with their decision, as in claim_for_apply): a wake-up's claim when no
    row of its own is pending (the rows of coalesced wake-ups, see workers/wake_ups.py).
    Run it inside the transaction that applies them, like claim_for_apply (SKIP LOCKED:
    rows another worker holds are left to it)."""
    return list(connection.execute(CLAIM_FRESH, {"size": size}).scalars())
