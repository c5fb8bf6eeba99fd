"""Resources rendered exactly as the API renders them, for an event's `data`.

`db` cannot import the API's marshmallow schemas (process packages import `db`, not the
other way round), so the JSON is built here, field for field like
`api/transactions/schemas.py::TransactionSchema`, `api/accounts/schemas.py::AccountSchema`
and `api/batches/schemas.py::BatchSchema`. tests/api/events/test_events.py compares the
events' data with the API's GET answers; GET /transactions/{id} itself answers with
`transaction`, and tests/api/transactions/test_one_rendering.py holds that to the schema's
dump in the history pages for every type, status and viewer, so they cannot drift apart.

Call them after `session.flush()`: server-side values (`updated_at`, `completed_at =
now()`) are then reloaded from the row, which is what a GET would show after commit.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import String, case, extract, func
from sqlalchemy.orm import Session

from db.core.money import format_minor
from db.fx import quotes
from db.models import Account, Batch, Transaction


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def iso_sql(column: Any) -> Any:
    """`_iso` in SQL, for a statement that renders a timestamp it sets itself
    (db/transactions/recording.py): the text Python's isoformat gives the UTC datetime
    psycopg reads (microseconds only when not zero); NULL stays NULL. Both are pinned
    to each other by tests/db/transactions/test_recording.py. Needs PostgreSQL 14+
    (EXTRACT returns numeric, so the modulo is exact) and the connection's UTC time zone
    (db/session.py sets it), as psycopg then reads the datetime in UTC."""
    utc = func.timezone("UTC", column)
    fraction = case(
        (extract("microseconds", column) % 1000000 == 0, ""),
        else_=func.to_char(utc, ".US", type_=String),
    )
    return func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS', type_=String) + fraction + "+00:00"


def _id(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None


def transaction(tx: Transaction | Any, reversed_by: uuid.UUID | None = None) -> dict[str, Any]:
    """`tx` is a Transaction, a plain row with its attribute names, or a TransactionView
    (whose reduced view hides the sender's fields): GET /transactions/{id} answers with this."""
    return {
        "id": str(tx.id),
        "type": tx.type,
        "status": tx.status,
        "from_account_id": _id(tx.from_account_id),
        "to_account_id": _id(tx.to_account_id),
        "amount": format_minor(tx.amount_minor, tx.currency),
        "currency": tx.currency,
        "reference": tx.reference,
        "metadata": tx.metadata_,
        "idempotency_key": tx.idempotency_key,
        "failure_code": tx.failure_code,
        "failure_message": tx.failure_message,
        "scheduled_for": _iso(tx.scheduled_for),
        "batch_id": _id(tx.batch_id),
        "schedule_id": _id(tx.schedule_id),
        "scheduled_run_at": _iso(tx.scheduled_run_at),
        "reverses": _id(tx.reverses),
        "reversed_by": _id(reversed_by),
        "attempts": tx.attempts,
        "created_at": _iso(tx.created_at),
        "updated_at": _iso(tx.updated_at),
        "completed_at": _iso(tx.completed_at),
        **hold_fields(tx),
        **quotes.rendered(tx),
    }


def hold_fields(tx: Transaction) -> dict[str, Any]:
    """A hold's amounts and expiry, a capture's hold (null on every other type)."""
    return {
        "held_amount": _minor(tx.held_amount_minor, tx.currency),
        "captured_amount": _minor(tx.captured_amount_minor, tx.currency),
        "expires_at": _iso(tx.expires_at),
        "captures": _id(tx.captures),
    }


def _minor(amount: int | None, currency: str) -> str | None:
    return format_minor(amount, currency) if amount is not None else None


def account(session: Session, acc: Account) -> dict[str, Any]:
    from db.accounts.service import view

    v = view(session, acc)
    return {
        "id": str(acc.id),
        "owner_id": _id(acc.owner_id),
        "name": acc.name,
        "currency": acc.currency,
        "kind": acc.kind,
        "status": acc.status,
        "balance": format_minor(v.balance_minor, acc.currency),
        "available_balance": format_minor(v.available_minor, acc.currency),
        "overdraft_limit": format_minor(v.overdraft_limit_minor, acc.currency),
        "created_at": _iso(acc.created_at),
        "updated_at": _iso(acc.updated_at),
    }


def batch(b: Batch) -> dict[str, Any]:
    return {
        "id": str(b.id),
        "status": b.status,
        "mode": b.mode,
        "source": b.source,
        "filename": b.filename,
        "content_sha256": b.content_sha256,
        "reference": b.reference,
        "scheduled_for": _iso(b.scheduled_for),
        "total_items": b.total_items,
        "counts": {
            "pending": b.pending_count,
            "completed": b.completed_count,
            "failed": b.failed_count,
            "rejected": b.rejected_count,
            "cancelled": b.cancelled_count,
            "dead_lettered": b.dead_lettered_count,
        },
        "progress": round((b.total_items - b.pending_count) / b.total_items, 4) if b.total_items else 0.0,
        "failure_code": b.failure_code,
        "failure_message": b.failure_message,
        "created_by": _id(b.created_by),
        "idempotency_key": b.idempotency_key,
        "created_at": _iso(b.created_at),
        "updated_at": _iso(b.updated_at),
        "started_at": _iso(b.started_at),
        "completed_at": _iso(b.completed_at),
        "reverses": _id(b.reverses),
    }
