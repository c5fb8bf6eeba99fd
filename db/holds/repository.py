"""Queries of holds and captures. Every write here runs under the locks its caller took:
the hold's row, then its source account's balance row (the global order: transaction
rows before accounts, accounts in ascending id)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from db.core.sql import constant
from db.models import AuditLog, Transaction

# A capture that moved nothing (failed, cancelled) does not use up the hold's one capture.
INEFFECTIVE = ("failed", "cancelled")

_HOLD_COLUMNS = (
    Transaction.id,
    Transaction.type,
    Transaction.status,
    Transaction.from_account_id,
    Transaction.to_account_id,
    Transaction.amount_minor,
    Transaction.currency,
    Transaction.held_amount_minor,
)


def lock_holds(session: Session, hold_ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """Lock hold rows (ascending id) for a posting, as plain mutable objects."""
    rows = session.execute(
        select(*_HOLD_COLUMNS)
        .where(Transaction.id.in_(hold_ids))
        .order_by(Transaction.id)
        .with_for_update(key_share=True)
    ).all()
    return {row.id: SimpleNamespace(**row._mapping) for row in rows}


def write_held(session: Session, held: dict[uuid.UUID, int]) -> None:
    """Each account's reservation as the posting left it in memory (its row is locked)."""
    if held:
        session.execute(
            text(
                "UPDATE balances AS b SET held_minor = v.held, updated_at = now() "
                "FROM unnest(CAST(:ids AS uuid[]), CAST(:held AS bigint[])) AS v(id, held) "
                "WHERE b.account_id = v.id"
            ),
            {"ids": list(held), "held": list(held.values())},
        )


def mark_held(session: Session, hold_ids: list[uuid.UUID]) -> None:
    """Holds just decided `held` reserve their whole amount."""
    if hold_ids:
        session.execute(
            text(
                "UPDATE transactions SET held_amount_minor = amount_minor WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": hold_ids},
        )


def mark_captured(session: Session, captured: list[tuple[uuid.UUID, int]]) -> int:
    """(hold id, captured amount): `held -> captured`, nothing reserved any more; how many
    changed (all of them: each was locked and `held`)."""
    if not captured:
        return 0
    ids, amounts = (list(column) for column in zip(*captured, strict=True))
    result = session.execute(
        text(
            "UPDATE transactions AS h SET status = 'captured', held_amount_minor = 0, "
            "captured_amount_minor = v.amount, completed_at = now(), updated_at = now() "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:amounts AS bigint[])) AS v(id, amount) "
            "WHERE h.id = v.id AND h.status = 'held'"
        ),
        {"ids": ids, "amounts": amounts},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]  # an UPDATE returns a CursorResult


def audit_captured(session: Session, captures: list[Any]) -> None:
    if captures:
        session.execute(
            insert(AuditLog),
            [
                {
                    "action": "transaction.captured",
                    "entity_type": "transaction",
                    "entity_id": str(capture.captures),
                    "data": {"capture_id": str(capture.id), "captured_minor": capture.amount_minor},
                    "request_id": getattr(capture, "request_id", None),
                }
                for capture in captures
            ],
        )


def effective_capture(session: Session, hold_id: uuid.UUID) -> Transaction | None:
    """The hold's capture that is not failed or cancelled (the one it may have)."""
    return session.scalars(
        select(Transaction).where(Transaction.captures == hold_id, Transaction.status.not_in(INEFFECTIVE))
    ).one_or_none()


def captured_holds(session: Session, hold_ids: Iterable[uuid.UUID]) -> list[Transaction]:
    """Hold rows loaded fresh (a posting changed them by bulk SQL), for their events."""
    ids = list(hold_ids)
    if not ids:
        return []
    return list(
        session.scalars(
            select(Transaction).where(Transaction.id.in_(ids)).execution_options(populate_existing=True)
        )
    )


def claim_expired(session: Session, *, now: datetime, limit: int) -> list[Transaction]:
    """`held` holds whose `expires_at` has passed, locked FOR UPDATE SKIP LOCKED (a hold
    being captured, voided or expired by another tick is left to it), soonest first;
    those with an effective capture are left out (checked after the lock, in a statement
    of its own, so a capture recorded while this one waited is seen)."""
    holds = list(
        session.scalars(
            select(Transaction)
            .where(Transaction.status == constant("held"), Transaction.expires_at <= now)
            .order_by(Transaction.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
    )
    if not holds:
        return []
    captured = set(
        session.scalars(
            select(Transaction.captures).where(
                Transaction.captures.in_([h.id for h in holds]), Transaction.status.not_in(INEFFECTIVE)
            )
        )
    )
    return [h for h in holds if h.id not in captured]


def held_sums(session: Session) -> list[tuple[uuid.UUID, str, int, int]]:
    """(account, currency, stored held, sum of its `held` holds) where they differ."""
    return [
        (row[0], row[1], int(row[2]), int(row[3]))
        for row in session.execute(
            text(
                """
                SELECT b.account_id, b.currency, b.held_minor, COALESCE(h.total, 0)
                FROM balances b LEFT JOIN (
                    SELECT from_account_id, SUM(held_amount_minor) AS total FROM transactions
                    WHERE type = 'hold' AND status = 'held' GROUP BY from_account_id
                ) h ON h.from_account_id = b.account_id
                WHERE b.held_minor <> COALESCE(h.total, 0)
                LIMIT 100
                """
            )
        ).all()
    ]
