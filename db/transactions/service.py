"""Recording transfer requests (steps 1-2 of DESIGN.md): request-time rules, the
idempotency contract, and the durable `pending` (or `scheduled`) row.

Sending the message is the caller's job (`uow.enqueue`, after commit), because the
actor declarations live in `workers` and `db` imports none of the process packages.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from db import idempotency
from db.accounts import repository as accounts_repo
from db.accounts.repository import AccountFacts
from db.accounts.service import require_known_currency
from db.audit import repository as audit
from db.core.config import Settings
from db.core.errors import (
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    RuleViolation,
    ValidationFailed,
)
from db.core.money import AmountError, format_minor, parse_amount
from db.core.principal import Principal
from db.events import outbox
from db.fx import quotes
from db.fx.rates import RateError, parse_rate, render_rate
from db.idempotency import Submitted
from db.ledger import limits as limits_rules
from db.models import Account, Transaction
from db.transactions import recording
from db.transactions import repository as transactions_repo


@dataclass(frozen=True)
class MoneyMovement:
    """A validated client request, before it becomes a row."""

    type: str  # transfer | credit | debit | reversal | exchange
    amount: str
    currency: str
    from_account_id: uuid.UUID | None = None
    to_account_id: uuid.UUID | None = None
    account_id: uuid.UUID | None = None
    reference: str | None = None
    scheduled_for: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    reverses: uuid.UUID | None = None  # reversal: the transaction it moves back
    expires_in_seconds: int | None = None  # hold: how long it reserves (db/holds)
    captures: uuid.UUID | None = None  # capture: the hold it moves money for
    rate: str | None = None  # exchange: the rate the client was quoted (db/fx/quotes.py)
    to_currency: str | None = None  # reversal of an exchange: the currency it gives back

    def canonical_amount(self) -> str:
        """The amount as parsed (minor units, rendered with the currency's decimals), so
        "2.5" and "2.50" are one request; the currency's own rendering, so the hashes
        of requests sent that way are unchanged. An unparseable amount stays as sent
        (that request is refused anyway)."""
        try:
            return format_minor(parse_amount(self.amount, self.currency, allow_zero=True), self.currency)
        except (KeyError, TypeError, ValueError):  # AmountError is a ValueError
            return self.amount

    def canonical_rate(self) -> str:
        """The quoted rate as a number ("1.50" and "1.5" are one request); as sent when
        it does not parse (that request is refused anyway)."""
        try:
            return render_rate(parse_rate(self.rate))
        except RateError:
            return str(self.rate)

    def fingerprint(self) -> str:
        """SHA-256 of the canonical request: what makes a retry a replay."""
        extra: dict[str, Any] = (
            {"reverses": str(self.reverses)} if self.reverses else {}
        )  # old hashes unchanged
        if self.type in ("hold", "capture"):
            extra |= {"expires_in_seconds": self.expires_in_seconds, "captures": str(self.captures or "")}
        if self.rate is not None:
            extra["rate"] = self.canonical_rate()
        canonical = json.dumps(
            {
                **extra,
                "type": self.type,
                "amount": self.canonical_amount(),
                "currency": self.currency,
                "from": str(self.from_account_id or ""),
                "to": str(self.to_account_id or ""),
                "account": str(self.account_id or ""),
                "reference": self.reference,
                "scheduled_for": self.scheduled_for.isoformat() if self.scheduled_for else None,
                "metadata": self.metadata,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def submit(
    session: Session,
    principal: Principal,
    request: MoneyMovement,
    *,
    idempotency_key: str | None,
    settings: Settings,
    request_id: str | None = None,
) -> Submitted[Transaction]:
    fingerprint = request.fingerprint()
    # The key is looked up only when it can matter: when a rule refuses the request (a
    # retry of an accepted one is replayed whatever the rules say now: its own pending
    # amount counts against the limits, an account may have changed) and when the
    # insert finds it taken. A new request, the common case, saves the round trip.
    try:
        amount_minor, source, target = _validated(session, principal, request, settings)
        now = datetime.now(UTC)
        check_horizon(request.scheduled_for, now, settings, "scheduled_for")
        scheduled = request.scheduled_for is not None and request.scheduled_for > now
        check_limits(session, settings, request, amount_minor, source, scheduled=scheduled)
        # An exchange's figures are fixed now (a stale client quote is refused here, so
        # a retry of an accepted exchange replays whatever the rate has become).
        exchange = (
            quotes.quote(
                session,
                amount_minor=amount_minor,
                from_currency=source.currency,
                to_currency=target.currency,
                client_rate=request.rate,
                settings=settings,
            )
            if request.type == "exchange"
            else {}
        )
    except DomainError:
        replayed = replay_if_seen(session, principal, idempotency_key, fingerprint)
        if replayed is not None:
            return replayed
        raise
    values = {
        "id": uuid.uuid4(),
        "type": request.type,
        "status": "scheduled" if scheduled else "pending",
        "from_account_id": source.id,
        "to_account_id": target.id,
        "amount_minor": amount_minor,
        "currency": request.currency,
        "reference": request.reference,
        "metadata_": request.metadata,  # ORM attribute name of the `metadata` column
        "created_by": principal.id,
        "idempotency_key": idempotency_key,
        "request_hash": fingerprint,
        "request_id": request_id,
        # In UTC, as the row reads back: the created event is rendered from this value.
        "scheduled_for": request.scheduled_for.astimezone(UTC)
        if scheduled and request.scheduled_for
        else None,
        **exchange,
    }
    if request.type == "hold":
        values |= hold_columns(request.expires_in_seconds)
    tx = recording.record_new(
        session,
        values,
        audit_action=f"transaction.requested.{request.type}",
        audit_data={
            "amount_minor": amount_minor,
            "currency": request.currency,
            **quotes.audit_data(exchange),
        },
        request_id=request_id,
    )
    if tx is None:
        return replay_taken_key(session, principal, idempotency_key, fingerprint)
    return idempotency.created(tx)


HOLD_DEFAULT_EXPIRY_S = 7 * 24 * 3600
HOLD_MAX_EXPIRY_S = 30 * 24 * 3600


def hold_columns(expires_in_seconds: int | None) -> dict[str, Any]:
    """A new hold reserves nothing until the worker decides it `held`; it expires
    `expires_in_seconds` (1 s to 30 days, default 7 days) after it was recorded, by the
    database's clock, the one the expiry tick reads."""
    seconds = HOLD_DEFAULT_EXPIRY_S if expires_in_seconds is None else expires_in_seconds
    if not 1 <= seconds <= HOLD_MAX_EXPIRY_S:
        raise ValidationFailed.field("expires_in_seconds", f"must be from 1 to {HOLD_MAX_EXPIRY_S} seconds")
    return {
        "held_amount_minor": 0,
        "captured_amount_minor": 0,
        "expires_at": timedelta(seconds=seconds),  # after the database's now() (recording.py)
    }


def _replay(existing: Transaction, fingerprint: str) -> Submitted[Transaction]:
    return idempotency.replay(existing, fingerprint, kind="transaction", differs="request body")


def replay_taken_key(
    session: Session, principal: Principal, idempotency_key: str | None, fingerprint: str
) -> Submitted[Transaction]:
    """The insert found its Idempotency-Key taken (a retry, or a concurrent request with
    it that committed first): the original, replayed (or refused if the body differs)."""
    replayed = replay_if_seen(session, principal, idempotency_key, fingerprint)
    assert replayed is not None
    return replayed


def replay_if_seen(
    session: Session, principal: Principal, idempotency_key: str | None, fingerprint: str
) -> Submitted[Transaction] | None:
    """The replay of the caller's earlier request with this Idempotency-Key, if any."""
    if not idempotency_key:
        return None
    existing = transactions_repo.by_idempotency_key(session, principal.id, idempotency_key)
    return _replay(existing, fingerprint) if existing is not None else None


def _resolve_accounts(
    session: Session, principal: Principal, request: MoneyMovement
) -> tuple[AccountFacts, AccountFacts]:
    if request.type in ("transfer", "hold", "exchange"):  # a hold: the transfer it will become
        found = accounts_repo.facts(session, (request.from_account_id, request.to_account_id))
        source = _own_account(found.get, principal, request.from_account_id, "from_account_id")
        target = _existing_account(found.get, request.to_account_id, "to_account_id")
        if source.id == target.id:
            raise RuleViolation("from and to accounts must differ", code="same_account")
        return source, target
    if request.type == "credit":
        if not principal.sees_everything:
            raise Forbidden("only finance or admin may credit accounts")
        target = _existing_account(partial(accounts_repo.get, session), request.account_id, "account_id")
        return accounts_repo.system_account(session, target.currency), target
    if request.type == "debit":
        source = _own_account(
            partial(accounts_repo.get, session), principal, request.account_id, "account_id"
        )
        return source, accounts_repo.system_account(session, source.currency)
    raise ValidationFailed.field("type", f"unknown transaction type {request.type!r}")


# How the two functions below find an account by id (None: no such account).
_Lookup = Callable[[uuid.UUID], "AccountFacts | None"]


def _own_account(
    lookup: _Lookup, principal: Principal, account_id: uuid.UUID | None, name: str
) -> AccountFacts:
    account = _existing_account(lookup, account_id, name)
    if not (principal.sees_everything or account.owner_id == principal.id):
        raise NotFound(f"{name}: account not found")
    return account


def _existing_account(lookup: _Lookup, account_id: uuid.UUID | None, name: str) -> AccountFacts:
    if account_id is None:
        raise ValidationFailed.field(name, "Missing data for required field.")
    account = lookup(account_id)
    if account is None:
        raise NotFound(f"{name}: account not found")
    if account.kind == "system":
        raise ValidationFailed.field(name, "system accounts move money only through credit and debit")
    return account


def check_limits(
    session: Session,
    settings: Settings,
    request: MoneyMovement,
    amount_minor: int,
    source: AccountFacts,
    *,
    scheduled: bool,
) -> None:
    """`limit_exceeded` when the amount, on top of what the source account has completed
    or has pending, would break one of its limits. A scheduled transfer is checked against
    the per-transaction limit only: today's usage says nothing about its day.

    A fast answer from what the data already shows; it can be raced. The worker checks
    again under the source account's row lock (`db.ledger.posting.decide`), and that cannot."""
    if not limits_rules.applies(request.type, source):
        return
    limits = limits_rules.effective(source, settings)
    usage = limits_rules.Usage()
    if limits.needs_usage and not scheduled:
        usage = transactions_repo.outgoing_usage(session, source.id, include_pending=True)
    breach = limits_rules.check(limits, usage, amount_minor, request.currency, per_transaction_only=scheduled)
    if breach is not None:
        raise RuleViolation(breach.message, breach.details, code="limit_exceeded")


def check_request_time_rules(
    request: MoneyMovement, source: AccountFacts, target: AccountFacts, caller: Principal | None
) -> None:
    """Both accounts active and in the request's currency. The answer names the status
    and currency only of accounts the caller may read (`caller` None: a staff-only path,
    such as batch validation): a customer learns that a stranger's account cannot take
    the transfer, never what state or currency it is in."""

    def readable(account: AccountFacts) -> bool:
        return caller is None or caller.sees_everything or account.owner_id == caller.id

    for account in (source, target):
        if account.status != "active":
            message = (
                f"account {account.id} is {account.status}"
                if readable(account)
                else "the target account cannot receive transfers"
            )
            raise RuleViolation(message, code="account_inactive")
    problem = _currency_problem(request, source, target)
    if problem:
        raise RuleViolation(
            problem,
            {"accounts": {str(a.id): a.currency for a in (source, target) if readable(a)}},
            code="currency_mismatch",
        )


def _currency_problem(request: MoneyMovement, source: AccountFacts, target: AccountFacts) -> str | None:
    """What is wrong with the accounts' currencies for `request`, if anything. An
    exchange's source holds its currency and its target another one; the reversal of one
    gives back `currency` and receives `to_currency`; anything else is one currency."""
    if request.type == "exchange":
        if source.currency != request.currency:
            return f"currency {request.currency} is not the source account's currency"
        if target.currency == request.currency:
            return "an exchange's target account holds another currency; use a transfer"
        return None
    target_currency = request.to_currency or request.currency
    if source.currency != request.currency or target.currency != target_currency:
        return f"transaction currency {request.currency} does not match the accounts' currency"
    return None


def check_horizon(moment: datetime | None, now: datetime, settings: Settings, field: str) -> None:
    """A future time further ahead than the configured horizon is refused: a typo in the
    year should not park money for a decade."""
    horizon = timedelta(days=settings.schedule_horizon_days)
    if moment is not None and moment > now + horizon:
        raise ValidationFailed.field(
            field, f"must be at most {settings.schedule_horizon_days} days in the future"
        )


def _validated(
    session: Session, principal: Principal, request: MoneyMovement, settings: Settings
) -> tuple[int, AccountFacts, AccountFacts]:
    """Currency, amount, accounts and the request-time account rules, in that order:
    (amount in minor units, source, target)."""
    require_known_currency(request.currency)
    try:
        amount_minor = parse_amount(request.amount, request.currency, max_amount=settings.max_amount)
    except AmountError as exc:
        raise ValidationFailed.field("amount", str(exc)) from None
    source, target = _resolve_accounts(session, principal, request)
    check_request_time_rules(request, source, target, principal)
    return amount_minor, source, target


def check_request(
    session: Session, principal: Principal, request: MoneyMovement, *, settings: Settings
) -> tuple[int, AccountFacts, AccountFacts]:
    """Every request-time rule of `submit`, recording nothing: standing orders validate
    their transfer template with it. Returns (amount in minor units, source, target)."""
    amount_minor, source, target = _validated(session, principal, request, settings)
    # Like a scheduled transfer: the per-transaction limit only (its days are in the future).
    check_limits(session, settings, request, amount_minor, source, scheduled=True)
    return amount_minor, source, target


# A dead-lettered transfer moved no money; its client may cancel it (and re-send), so a
# later `dlq retry` can never pay it a second time.
CANCELLABLE = ("scheduled", "pending", "dead_lettered")
_LOCK_NOT_AVAILABLE = "55P03"


def cancel(
    session: Session, principal: Principal, transaction_id: uuid.UUID, *, request_id: str | None = None
) -> Transaction:
    """Cancel a `scheduled` or `pending` transaction, decided under the row lock.

    The worker locks the same row (FOR UPDATE) before applying and no-ops unless the row
    is `pending`, so the two serialize: if the worker holds the lock we wait for it (it
    takes milliseconds) and then see `completed`/`failed` -> 409; if we win, the worker
    later sees `cancelled` and moves no money. A lock we cannot get within the lock
    timeout is reported as 409 too: the transaction is being processed.

    Customers cancel only what they created; anything else is 404, like a transaction that
    does not exist. A batch line is 409 for everyone: cancel the batch.
    """
    tx = transactions_repo.get(session, transaction_id)
    if tx is None or not _may_cancel(principal, tx):
        raise NotFound("transaction not found")
    if tx.batch_id is not None:
        # One line out of an atomic batch fails the whole batch, and the other recipients
        # go unpaid: a batch is cancelled as a whole or not at all.
        raise Conflict(
            "A line of a batch cannot be cancelled on its own; cancel the batch.",
            {"transaction_id": str(tx.id), "batch_id": str(tx.batch_id)},
        )
    try:
        locked = transactions_repo.get_for_update(session, transaction_id)
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            raise Conflict(
                "The transaction is being processed right now and can no longer be cancelled.",
                {"transaction_id": str(transaction_id)},
            ) from None
        raise
    assert locked is not None  # rows are never deleted
    if locked.status not in CANCELLABLE:
        raise Conflict(
            f"A {locked.status} transaction cannot be cancelled.",
            {"transaction_id": str(locked.id), "status": locked.status},
        )
    _mark_cancelled(session, principal, locked, {}, request_id)
    session.flush()
    return locked


def _mark_cancelled(
    session: Session, principal: Principal, tx: Transaction, data: dict[str, Any], request_id: str | None
) -> None:
    """Cancel a locked, cancellable transaction and audit it."""
    previous, tx.status = tx.status, "cancelled"
    audit.record(
        session,
        action="transaction.cancelled",
        entity_type="transaction",
        entity_id=tx.id,
        actor_id=principal.id,
        data={"previous_status": previous, **data},
        request_id=request_id,
    )
    outbox.record(session, outbox.transaction_events(session, [tx]))  # its event, with the change


def cancel_all_created_by(
    session: Session, principal: Principal, user_id: uuid.UUID, *, reason: str
) -> list[uuid.UUID]:
    """Cancel what the user created and is still waiting (a deactivated user's scheduled
    and pending transfers), each audited with `reason`; returns their ids."""
    cancelled = []
    for tx in transactions_repo.open_created_by(session, user_id, CANCELLABLE):
        _mark_cancelled(session, principal, tx, {"reason": reason}, None)
        cancelled.append(tx.id)
    session.flush()
    return cancelled


def reverse(
    session: Session,
    principal: Principal,
    transaction_id: uuid.UUID,
    *,
    idempotency_key: str | None,
    request_id: str | None = None,
) -> Submitted[Transaction]:
    """Record a `pending` reversal of a `completed` transaction (finance/admin).

    The reversal moves the same amount back (from the original's recipient to its
    sender) and goes through the worker like any transaction: `db.ledger.posting.decide` applies
    the transfer rules (accounts active, currencies, funds within the overdraft) but no
    outgoing limits (an operator's correction; `db.ledger.limits.LIMITED_TYPES`). So a
    recipient who already spent the money makes the reversal `failed`
    `insufficient_funds`: finance reverses only money that is still there, and we check
    it here first (a fast 422 that does not use up the one reversal a transaction gets).

    Decided under the original's row lock: concurrent reversals of one transaction
    serialize, and the UNIQUE constraint on `reverses` is the backstop (409). A reversal
    itself cannot be reversed (409): to redo the original, make a new transaction.
    """
    if not principal.sees_everything:
        raise Forbidden("only finance or admin may reverse transactions")
    original = transactions_repo.get(session, transaction_id)
    if original is None:
        raise NotFound("transaction not found")
    # The same amounts back; an exchange's in both currencies, at its rate (db/fx/quotes.py).
    exchange = quotes.reversal_figures(original)
    amount_minor = exchange.get("amount_minor", original.amount_minor)
    currency = exchange.get("currency", original.currency)
    request = MoneyMovement(
        type="reversal",
        amount=format_minor(amount_minor, currency),
        currency=currency,
        from_account_id=original.to_account_id,
        to_account_id=original.from_account_id,
        reverses=original.id,
        to_currency=exchange.get("to_currency"),
    )
    fingerprint = request.fingerprint()
    replayed = replay_if_seen(session, principal, idempotency_key, fingerprint)
    if replayed is not None:
        return replayed

    original = lock_or_conflict(session, transaction_id, "reversed")
    # A concurrent request with the same key held the lock before us and committed.
    replayed = replay_if_seen(session, principal, idempotency_key, fingerprint)
    if replayed is not None:
        return replayed
    if original.type == "reversal":
        raise Conflict(
            "A reversal cannot be reversed; make a new transaction instead.",
            {"transaction_id": str(original.id), "reverses": str(original.reverses)},
        )
    if original.status != "completed":
        raise Conflict(
            f"Only a completed transaction can be reversed; this one is {original.status}.",
            {"transaction_id": str(original.id), "status": original.status},
        )
    _no_reversal_yet(session, original.id)

    source = accounts_repo.get(session, original.to_account_id)
    target = accounts_repo.get(session, original.from_account_id)
    if source is None or target is None:
        raise NotFound("account not found")  # rows are never deleted; defensive
    check_request_time_rules(request, source, target, principal)
    _check_funds(session, source, amount_minor)

    values = {
        "id": uuid.uuid4(),
        "type": "reversal",
        "status": "pending",
        "from_account_id": source.id,
        "to_account_id": target.id,
        "amount_minor": original.amount_minor,
        "currency": original.currency,
        **exchange,
        "created_by": principal.id,
        "idempotency_key": idempotency_key,
        "request_hash": fingerprint,
        "request_id": request_id,
        "reverses": original.id,
    }
    audit_data = {
        "reverses": str(original.id),
        "amount_minor": amount_minor,
        "currency": currency,
        **quotes.audit_data(exchange),
    }
    try:
        with session.begin_nested():
            tx = recording.record_new(
                session,
                values,
                audit_action="transaction.requested.reversal",
                audit_data=audit_data,
                request_id=request_id,
            )
    except IntegrityError as exc:
        if "uq_transactions_reverses" not in str(exc.orig):
            raise
        _no_reversal_yet(session, original.id)
        raise Conflict(
            "This transaction was already reversed.", {"transaction_id": str(original.id)}
        ) from None
    if tx is None:
        return replay_taken_key(session, principal, idempotency_key, fingerprint)
    return idempotency.created(tx)


def lock_or_conflict(session: Session, transaction_id: uuid.UUID, verb: str) -> Transaction:
    try:
        locked = transactions_repo.get_for_update(session, transaction_id)
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            raise Conflict(
                f"The transaction is being processed right now and cannot be {verb}.",
                {"transaction_id": str(transaction_id)},
            ) from None
        raise
    assert locked is not None  # rows are never deleted
    return locked


def _no_reversal_yet(session: Session, transaction_id: uuid.UUID) -> None:
    existing = transactions_repo.reversal_of(session, transaction_id)
    if existing is not None:
        raise Conflict(
            "This transaction was already reversed; a transaction is reversed at most once.",
            {"transaction_id": str(transaction_id), "reversed_by": str(existing.id)},
        )


def _check_funds(session: Session, source: Account, amount_minor: int) -> None:
    """The worker's funds rule, as a request-time hint: current balance minus what is
    already pending out of the account must cover the amount (down to the overdraft)."""
    figures = accounts_repo.figures(session, [source.id]).get(source.id)
    if figures is None or figures.allow_negative:
        return
    if figures.available_minor - amount_minor < -figures.overdraft_limit_minor:
        raise RuleViolation(
            f"account {source.id} no longer holds the {format_minor(amount_minor, source.currency)} to move back",
            {
                "account_id": str(source.id),
                "available": format_minor(figures.available_minor, source.currency),
            },
            code="insufficient_funds",
        )


def _may_cancel(principal: Principal, tx: Transaction) -> bool:
    """Finance and admin cancel anything; a customer only what they created (their own
    transfers and debits, their schedules' runs), never what finance set up on their
    account (a fee, a reversal, a batch line)."""
    return principal.sees_everything or tx.created_by == principal.id


def release_due(session: Session, *, now: datetime, limit: int) -> list[uuid.UUID]:
    """Move due `scheduled` transactions to `pending` (claimed FOR UPDATE SKIP LOCKED, so
    concurrent callers split the rows between them) and audit each release. The caller
    enqueues the ids after commit. `now` is a parameter so tests control the clock."""
    ids = transactions_repo.claim_due_scheduled(session, now=now, limit=limit)
    for tx_id in ids:
        audit.record(
            session,
            action="transaction.released",
            entity_type="transaction",
            entity_id=tx_id,
            data={"released_at": now.isoformat()},
        )
    session.flush()
    return ids
