"""Applying batch lines to the ledger: many transfers per DB transaction.

The single-transfer posting (`db.ledger.posting`) does, per transfer: lock the transaction row,
no-op unless `pending`, lock both accounts in id order, `decide`, write two entries and
two balances. A chunk does the same for thousands of lines at once:

1. one advisory lock per batch, so duplicate deliveries of a chunk step aside instead
   of queueing behind each other, and the batch's cursor says where the chunk starts;
2. lock the chunk's transaction rows (line order); lines no longer `pending` are skipped,
   which is what makes a redelivered chunk harmless;
3. lock every account the chunk touches, once, in ascending id order (the global order
   of every writer, so chunks and single transfers never deadlock);
4. `decide` each line in file order against the locked balances, held in memory, so
   line 7 sees the money line 3 moved;
5. write entries with COPY, balances and statuses with one UPDATE ... FROM unnest each.

Mode `atomic` does the same for the whole batch in one DB transaction and writes under
a savepoint: the first line that fails rolls every entry back, and the batch ends
`failed` with that line's reason while every other line is `cancelled`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from db.audit import repository as audit
from db.batches import line_repository as lines_repo
from db.batches import repository as batches_repo
from db.batches import states
from db.core.config import get_settings
from db.core.logs import get_logger
from db.events import outbox
from db.ledger import limits as limits_rules
from db.ledger.posting import LedgerCorrupted, decide
from db.models import Batch
from db.transactions import repository as transactions_repo

log = get_logger(__name__)

# Line numbers read (and locked) per statement by the atomic mode.
BLOCK = 5000


@dataclass(frozen=True)
class ChunkOutcome:
    status: str  # applied | noop | busy
    completed: int = 0
    failed: int = 0
    skipped: int = 0
    next_line: int | None = None  # where the next chunk starts; None when there is none
    batch_status: str | None = None


class _Book:
    """Balances of the locked accounts as the chunk moves money, in memory, and what each
    limited source account has sent so far (read once under its row lock, then counted
    up as lines complete), so batch lines obey the same outgoing limits as transfers."""

    def __init__(self, session: Session, locked: dict[uuid.UUID, tuple[Any, Any]]) -> None:
        self.session = session
        self.locked = locked
        self.touched: set[uuid.UUID] = set()
        self._limits: dict[uuid.UUID, tuple[limits_rules.Limits, limits_rules.Usage]] = {}

    def _limits_of(self, item: Any, account: Any) -> tuple[limits_rules.Limits, limits_rules.Usage]:
        if not limits_rules.applies(item.type, account):
            return limits_rules.NO_LIMITS, limits_rules.Usage()
        if account.id not in self._limits:
            limits = limits_rules.effective(account, get_settings())
            usage = (
                transactions_repo.outgoing_usage(self.session, account.id, include_pending=False)
                if limits.needs_usage
                else limits_rules.Usage()
            )
            self._limits[account.id] = (limits, usage)
        return self._limits[account.id]

    def decide(self, item: Any, entries: list[tuple[Any, ...]]):
        try:
            source, target = self.locked[item.from_account_id], self.locked[item.to_account_id]
        except KeyError as missing:
            raise LedgerCorrupted(f"transaction {item.id}: account {missing} has no balance row") from None
        limits, usage = self._limits_of(item, source[0])
        decision = decide(item, source, target, limits, usage)
        if decision.status == "completed":
            amount = item.amount_minor
            source[1].balance_minor -= amount
            target[1].balance_minor += amount
            entries.append((item.id, source[0].id, -amount, item.currency, source[1].balance_minor))
            entries.append((item.id, target[0].id, amount, item.currency, target[1].balance_minor))
            self.touched.update((source[0].id, target[0].id))
            if source[0].id in self._limits:
                self._limits[source[0].id] = (
                    limits,
                    limits_rules.Usage(usage.daily_outgoing_minor + amount, usage.minute_outgoing_count + 1),
                )
        return decision

    def balances(self) -> dict[uuid.UUID, int]:
        return {account_id: self.locked[account_id][1].balance_minor for account_id in self.touched}


def _accounts_of(items: Iterable[Any]) -> set[uuid.UUID]:
    return {account_id for item in items for account_id in (item.from_account_id, item.to_account_id)}


def apply_chunk(session: Session, batch_id: uuid.UUID, start_line: int, *, chunk_size: int) -> ChunkOutcome:
    """Apply the next `chunk_size` lines from `start_line` (the batch's cursor) in the
    caller's transaction. The caller commits, then sends the chunk at `next_line`."""
    if not batches_repo.try_lock(session, batch_id):
        return ChunkOutcome("busy")  # another delivery is applying this batch right now
    batch = batches_repo.get(session, batch_id)
    if batch is None or batch.status != "processing" or batch.next_line != start_line:
        return ChunkOutcome("noop")  # finished, cancelled, or a stale duplicate of an earlier chunk
    if batch.mode == "atomic":
        return _apply_atomic(session, batch)

    next_line = start_line + chunk_size
    items = lines_repo.lock_items(session, batch.id, lines=(start_line, next_line))
    book = _Book(session, lines_repo.lock_accounts(session, _accounts_of(items)))
    entries: list[tuple[Any, ...]] = []
    decisions: list[tuple[uuid.UUID, str, str | None, str | None]] = []
    skipped = 0
    for item in items:
        if item.status != "pending":
            skipped += 1  # decided by an earlier delivery, or cancelled on its own
            continue
        decision = book.decide(item, entries)
        decisions.append((item.id, decision.status, decision.failure_code, decision.failure_message))
    _write(session, book, entries, decisions)

    done = next_line > batch.last_line
    completed = sum(1 for d in decisions if d[1] == "completed")
    if not batches_repo.advance_cursor(session, batch.id, expected=start_line, next_line=next_line):
        raise RuntimeError(f"batch {batch.id}: cursor moved under the advisory lock")
    batch_status = states.settle(session, batch) if done else "processing"
    audit.record(
        session,
        action="batch.chunk_applied",
        entity_type="batch",
        entity_id=batch.id,
        data={
            "from_line": start_line,
            "to_line": next_line - 1,
            "completed": completed,
            "failed": len(decisions) - completed,
            "skipped": skipped,
        },
        request_id=batch.request_id,
    )
    return ChunkOutcome(
        "applied",
        completed=completed,
        failed=len(decisions) - completed,
        skipped=skipped,
        next_line=None if done else next_line,
        batch_status=batch_status,
    )


def _write(
    session: Session,
    book: _Book,
    entries: list[tuple[Any, ...]],
    decisions: list[tuple[uuid.UUID, str, str | None, str | None]],
) -> None:
    lines_repo.copy_entries(session, entries)
    lines_repo.write_balances(session, book.balances())
    book.touched.clear()
    changed = lines_repo.write_decisions(session, decisions)
    if changed != len(decisions):
        # Every row was locked and pending a moment ago; anything else is a bug.
        raise LedgerCorrupted(f"{len(decisions) - changed} locked batch transaction(s) changed status")
    outbox.record(session, outbox.transactions_by_id(session, [d[0] for d in decisions]))


def _apply_atomic(session: Session, batch: Batch) -> ChunkOutcome:
    windows = [(low, low + BLOCK) for low in range(batch.next_line, batch.last_line + 1, BLOCK)]
    # 1. Lock every line's transaction row, in line order; all must still be pending.
    accounts: set[uuid.UUID] = set()
    blocker = None
    for window in windows:
        block = lines_repo.lock_items(session, batch.id, lines=window)
        accounts |= _accounts_of(block)
        if blocker is None:
            blocker = next((item for item in block if item.status != "pending"), None)
    if blocker is not None:
        return _fail_atomic(session, batch, blocker.line_no, None, f"the line is {blocker.status}")

    # 2. Lock the accounts once, then decide and write block by block under a savepoint.
    book = _Book(session, lines_repo.lock_accounts(session, accounts))
    savepoint = session.begin_nested()
    completed = 0
    for window in windows:
        block = lines_repo.lock_items(session, batch.id, lines=window)  # already ours: no wait
        entries: list[tuple[Any, ...]] = []
        decisions: list[tuple[uuid.UUID, str, str | None, str | None]] = []
        for item in block:
            decision = book.decide(item, entries)
            if decision.status != "completed":
                savepoint.rollback()  # takes back every entry, balance and status written so far
                return _fail_atomic(
                    session,
                    batch,
                    item.line_no,
                    (item.id, decision.failure_code),
                    decision.failure_message or "",
                )
            decisions.append((item.id, decision.status, None, None))
        _write(session, book, entries, decisions)
        completed += len(decisions)
    savepoint.commit()
    batches_repo.advance_cursor(session, batch.id, expected=batch.next_line, next_line=batch.last_line + 1)
    batch_status = states.settle(session, batch)
    audit.record(
        session,
        action="batch.applied_atomically",
        entity_type="batch",
        entity_id=batch.id,
        data={"completed": completed},
        request_id=batch.request_id,
    )
    return ChunkOutcome("applied", completed=completed, batch_status=batch_status)


def _fail_atomic(
    session: Session,
    batch: Batch,
    line_no: int,
    failing: tuple[uuid.UUID, str | None] | None,
    reason: str,
) -> ChunkOutcome:
    """Nothing moves: the failing line is `failed` with its code, every other line
    `cancelled` with the reason, the batch `failed`."""
    code = failing[1] if failing else "line_not_pending"
    if failing:
        lines_repo.write_decisions(session, [(failing[0], "failed", code, reason)])
        outbox.record(session, outbox.transactions_by_id(session, [failing[0]]))
    message = f"line {line_no}: {code}: {reason}; nothing in the atomic batch moved money"
    cancelled = lines_repo.mark_unfinished(
        session,
        batch.id,
        status="cancelled",
        message=f"not applied: the atomic batch failed at line {line_no}",
    )
    batches_repo.advance_cursor(session, batch.id, expected=batch.next_line, next_line=line_no)
    states.fail(batch, code, message)
    session.flush()
    audit.record(
        session,
        action="batch.failed",
        entity_type="batch",
        entity_id=batch.id,
        data={"line": line_no, "failure_code": code, "cancelled": cancelled},
        request_id=batch.request_id,
    )
    log.info("batches.atomic_failed", batch_id=str(batch.id), line=line_no, failure_code=code)
    return ChunkOutcome("applied", failed=1 if failing else 0, batch_status="failed")
