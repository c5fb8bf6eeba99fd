"""Capturing, voiding and expiring holds (the hold itself is recorded like a transfer:
`db.transactions.service.submit` with type `hold`).

Who wins when a capture, a void and the expiry tick race for one hold: whoever locks the
hold's row first. A capture request checks the hold is `held` and records its `pending`
capture under that lock (the unique index on `captures` is the backstop); from then on
the hold has an effective capture, and a void answers 409 and the expiry tick leaves it
alone, so the capture the client was promised (202) is the one that happens. A void or
an expiry that locked first makes the hold `voided`/`expired`, and a capture request
after it is 409. If the capture then fails at the worker (an account frozen
meanwhile), it stops counting, and the hold can be voided, captured again, or expire.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import idempotency
from db.accounts import repository as accounts_repo
from db.audit import repository as audit
from db.core.config import Settings
from db.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from db.core.money import AmountError, format_minor, parse_amount
from db.core.principal import Principal
from db.events import outbox
from db.holds import repository as holds_repo
from db.idempotency import Submitted
from db.models import Transaction
from db.session import database_now
from db.transactions import recording
from db.transactions import service as transactions_service
from db.transactions.service import MoneyMovement
from db.transactions.views import visible


def _hold_for(session: Session, principal: Principal, hold_id: uuid.UUID, verb: str) -> Transaction:
    """The hold, if the principal may see it (404 otherwise) and act on it: its creator,
    finance or admin (403 for another party to it)."""
    hold = visible(session, principal, hold_id)
    if not (principal.sees_everything or hold.created_by == principal.id):
        raise Forbidden(f"only the hold's creator, finance or admin may {verb} it")
    if hold.type != "hold":
        raise Conflict(f"only a hold can be {verb}d; this is a {hold.type}", {"transaction_id": str(hold.id)})
    if hold.status == "pending":
        # Refused before any lock: a worker claiming while this request held the row
        # would skip it (SKIP LOCKED), and a refusal decides nothing, so no later
        # wake-up would come for it (db/transactions/repository.py claim_for_apply).
        _refuse_unless_held(hold, verb)
    return hold


def _refuse_unless_held(hold: Transaction, verb: str) -> None:
    if hold.status != "held":
        raise Conflict(
            f"A {hold.status} hold cannot be {verb}d; only a held one.",
            {"transaction_id": str(hold.id), "status": hold.status},
        )


def _require_held(session: Session, hold: Transaction, verb: str) -> None:
    _refuse_unless_held(hold, verb)
    capture = holds_repo.effective_capture(session, hold.id)
    if capture is not None:
        raise Conflict(
            "This hold already has a capture; a hold is captured at most once.",
            {"transaction_id": str(hold.id), "capture_id": str(capture.id), "capture_status": capture.status},
        )


def capture(
    session: Session,
    principal: Principal,
    hold_id: uuid.UUID,
    *,
    amount: str | None,
    idempotency_key: str | None,
    settings: Settings,
    request_id: str | None = None,
) -> Submitted[Transaction]:
    """Record a `pending` capture of a `held` hold, for `amount` (default: all it holds)."""
    hold = _hold_for(session, principal, hold_id, "capture")
    request = MoneyMovement(
        type="capture",
        amount=amount if amount is not None else "",
        currency=hold.currency,
        from_account_id=hold.from_account_id,
        to_account_id=hold.to_account_id,
        captures=hold.id,
    )
    fingerprint = request.fingerprint()
    replayed = transactions_service.replay_if_seen(session, principal, idempotency_key, fingerprint)
    if replayed is not None:
        return replayed

    hold = transactions_service.lock_or_conflict(session, hold_id, "captured")
    # A concurrent request with the same key held the lock before us and committed.
    replayed = transactions_service.replay_if_seen(session, principal, idempotency_key, fingerprint)
    if replayed is not None:
        return replayed
    _require_held(session, hold, "capture")
    assert hold.expires_at is not None and hold.held_amount_minor is not None  # a hold's columns
    if hold.expires_at <= database_now(session):
        raise Conflict(
            "The hold has expired; it is released by the next expiry tick.",
            {"transaction_id": str(hold.id), "expires_at": hold.expires_at.isoformat()},
        )
    amount_minor = hold.held_amount_minor
    if amount is not None:
        try:
            amount_minor = parse_amount(amount, hold.currency, max_amount=settings.max_amount)
        except AmountError as exc:
            raise ValidationFailed.field("amount", str(exc)) from None
        if amount_minor > hold.held_amount_minor:
            raise ValidationFailed.field(
                "amount",
                f"more than the hold reserves ({format_minor(hold.held_amount_minor, hold.currency)})",
            )
    source = accounts_repo.get(session, hold.from_account_id)
    target = accounts_repo.get(session, hold.to_account_id)
    if source is None or target is None:
        raise NotFound("account not found")  # rows are never deleted; defensive
    transactions_service.check_request_time_rules(request, source, target, principal)

    values = {
        "id": uuid.uuid4(),
        "type": "capture",
        "status": "pending",
        "from_account_id": hold.from_account_id,
        "to_account_id": hold.to_account_id,
        "amount_minor": amount_minor,
        "currency": hold.currency,
        "reference": hold.reference,
        "created_by": principal.id,
        "idempotency_key": idempotency_key,
        "request_hash": fingerprint,
        "request_id": request_id,
        "captures": hold.id,
    }
    try:
        with session.begin_nested():
            tx = recording.record_new(
                session,
                values,
                audit_action="transaction.requested.capture",
                audit_data={
                    "captures": str(hold.id),
                    "amount_minor": amount_minor,
                    "currency": hold.currency,
                },
                request_id=request_id,
            )
    except IntegrityError as exc:
        if "uq_transactions_captures" not in str(exc.orig):
            raise
        raise Conflict("This hold already has a capture.", {"transaction_id": str(hold.id)}) from None
    if tx is None:
        return transactions_service.replay_taken_key(session, principal, idempotency_key, fingerprint)
    return idempotency.created(tx)


def void(
    session: Session, principal: Principal, hold_id: uuid.UUID, *, request_id: str | None = None
) -> Transaction:
    """Release a `held` hold at once: `voided`, its reservation off the balance row."""
    _hold_for(session, principal, hold_id, "void")
    hold = transactions_service.lock_or_conflict(session, hold_id, "voided")
    _require_held(session, hold, "void")
    _release(session, [hold], "voided", actor_id=principal.id, request_id=request_id)
    return hold


def expire_due(session: Session, *, now: datetime, limit: int) -> list[uuid.UUID]:
    """Release up to `limit` holds still `held` at `expires_at` <= `now` (the database's
    clock; a parameter so tests control it): `expired`, with a void's effect."""
    holds = holds_repo.claim_expired(session, now=now, limit=limit)
    _release(session, holds, "expired", actor_id=None, request_id=None)
    return [hold.id for hold in holds]


def _release(
    session: Session,
    holds: list[Transaction],
    status: str,
    *,
    actor_id: uuid.UUID | None,
    request_id: str | None,
) -> None:
    """The locked `held` holds end `status`: their source accounts' balance rows are
    locked (ascending id, after the hold rows: the engine's order) and their
    reservations taken off; an audit row and an event each."""
    if not holds:
        return
    released: dict[uuid.UUID, int] = defaultdict(int)
    for hold in holds:
        released[hold.from_account_id] += hold.held_amount_minor or 0
    locked = accounts_repo.lock_in_order(session, released)
    for account_id, amount in released.items():
        balance = locked[account_id][1]
        balance.held_minor -= amount
    now = database_now(session)
    for hold in holds:
        audit.record(
            session,
            action=f"transaction.{status}",
            entity_type="transaction",
            entity_id=hold.id,
            actor_id=actor_id,
            data={"released_minor": hold.held_amount_minor},
            request_id=request_id,
        )
        hold.status, hold.held_amount_minor = status, 0
        hold.completed_at = now
    session.flush()
    outbox.record(session, outbox.transaction_events(session, holds))
