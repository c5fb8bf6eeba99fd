"""The transactional outbox: the writer of `events` (with db/transactions/recording.py,
which writes a new transaction's `transaction.created` event in the statement that
records it, rendered by `transaction_events_of_new`).

`record` inserts events in the caller's session, so they commit or roll back with the
change they describe: no event for a rolled-back change, none missing for a committed
one. Every caller goes through `record` (one COPY for many events), so a bulk posting
flush adds its events with one call.

Callers:
- db/ledger/posting.py `apply_transaction` (completed/failed, reversal completions),
- db/batches/posting.py (lines decided in bulk) and db/batches/states.py (a batch's end),
- db/transactions/service.py (cancelled), db/schedules/service.py (a standing
  order's run created), workers/transactions.py (dead-lettered),
- db/accounts/rules.py (frozen, unfrozen, closed).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from psycopg.types.json import Jsonb
from sqlalchemy.orm import Session

from db.core.sql import copy_rows
from db.events import render
from db.models import EVENT_TYPES, Account, Batch, Event, Transaction

# Transaction statuses that are announced as `transaction.<status>`.
TRANSACTION_STATUS_EVENTS = frozenset(
    {"completed", "failed", "cancelled", "dead_lettered", "held", "captured", "voided", "expired"}
)


@dataclass(frozen=True)
class NewEvent:
    type: str
    data: dict[str, Any]
    # Whose events these are: customers see (and receive) events of their own accounts.
    account_ids: tuple[uuid.UUID, ...] = field(default_factory=tuple)


def record(session: Session, events: Sequence[NewEvent]) -> None:
    """Append `events` in the caller's transaction (one COPY, whatever their number)."""
    if not events:
        return
    for event in events:
        if event.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event.type!r}")
    # COPY: the ORM's bulk insert sent one INSERT per event (psycopg's executemany), 13 %
    # of a worker group's time for 100 events. orjson: json.dumps of the rendered events
    # was most of what is left (the column is jsonb: the text's layout is not kept).
    copy_rows(
        session,
        Event.__tablename__,
        ("id", "type", "data", "account_ids"),
        (
            (
                uuid.uuid4(),
                event.type,
                Jsonb(event.data, dumps=orjson.dumps),
                [a for a in event.account_ids if a is not None],
            )
            for event in events
        ),
    )


def _accounts_of(tx: Transaction) -> tuple[uuid.UUID, ...]:
    return tuple(a for a in (tx.from_account_id, tx.to_account_id) if a is not None)


def transaction_events(
    session: Session, txs: Iterable[Transaction], *, created: bool = False
) -> list[NewEvent]:
    """The events of transactions whose status was just set (flushes first, so the data
    carries the row as stored): `transaction.<status>` for a final status, or
    `transaction.created` with `created=True`; a completed reversal also announces
    `transaction.reversed` with the original as it now renders (showing `reversed_by`)."""
    from db.transactions import repository as transactions_repo

    txs = list(txs)
    session.flush()
    if created:
        return transaction_events_of_new(txs)
    return _status_events(session, txs, transactions_repo.reversed_by(session, [tx.id for tx in txs]))


def decided_events(session: Session, rows: Sequence[Any]) -> list[NewEvent]:
    """`transaction_events` of rows a posting has just decided (the engine's flush), as
    its write returned them (plain rows: db.ledger.repository.write_decisions). None of
    them has a reversal to show: each was `pending` under this transaction's lock until
    now, and a reversal is refused for anything not completed."""
    if not rows:
        return []
    return _status_events(session, rows, {})


def _status_events(
    session: Session, txs: Sequence[Any], reversed_by: dict[uuid.UUID, uuid.UUID]
) -> list[NewEvent]:
    events = []
    originals = []
    for tx in txs:
        if tx.status not in TRANSACTION_STATUS_EVENTS:
            continue
        events.append(
            NewEvent(
                f"transaction.{tx.status}", render.transaction(tx, reversed_by.get(tx.id)), _accounts_of(tx)
            )
        )
        if tx.type == "reversal" and tx.status == "completed" and tx.reverses:
            originals.append(tx.reverses)
    if originals:
        events += _reversed(session, originals)
    events += _captured(session, [tx.captures for tx in txs if _completes_capture(tx)])
    return events


def transaction_events_of_new(txs: Iterable[Transaction | Any]) -> list[NewEvent]:
    """`transaction.created` of transactions just recorded (objects, or plain rows with
    their attribute names), rendered from them with no query: a transaction not yet
    committed cannot have been reversed or captured."""
    return [NewEvent("transaction.created", render.transaction(tx), _accounts_of(tx)) for tx in txs]


def _completes_capture(tx: Transaction) -> bool:
    return tx.type == "capture" and tx.status == "completed" and tx.captures is not None


def _captured(session: Session, hold_ids: list[uuid.UUID | None]) -> list[NewEvent]:
    """A completed capture also announces its hold, now `captured` (db/holds)."""
    from db.holds import repository as holds_repo

    holds = holds_repo.captured_holds(session, [h for h in hold_ids if h is not None])
    return [NewEvent("transaction.captured", render.transaction(h), _accounts_of(h)) for h in holds]


def _reversed(session: Session, original_ids: list[uuid.UUID]) -> list[NewEvent]:
    from db.transactions import repository as transactions_repo

    reversed_by = transactions_repo.reversed_by(session, original_ids)
    events = []
    for original_id in original_ids:
        original = transactions_repo.get(session, original_id)
        if original is not None:
            data = render.transaction(original, reversed_by.get(original_id))
            events.append(NewEvent("transaction.reversed", data, _accounts_of(original)))
    return events


def transactions_by_id(
    session: Session, ids: Sequence[uuid.UUID], *, created: bool = False
) -> list[NewEvent]:
    """`transaction_events` for rows changed by bulk SQL (batch lines): loaded fresh."""
    from sqlalchemy import select

    if not ids:
        return []
    txs = session.scalars(
        select(Transaction).where(Transaction.id.in_(ids)).execution_options(populate_existing=True)
    ).all()
    return transaction_events(session, txs, created=created)


def account_event(session: Session, account: Account, status: str) -> NewEvent:
    session.flush()
    session.refresh(account)
    return NewEvent(f"account.{status}", render.account(session, account), (account.id,))


def batch_event(session: Session, batch: Batch) -> NewEvent:
    """`batch.<final status>`; finance's business, so no customer sees it."""
    session.flush()
    session.refresh(batch)
    return NewEvent(f"batch.{batch.status}", render.batch(batch))
