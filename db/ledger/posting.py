"""The ledger posting: the only code that moves money.

`apply_transaction` is step 4 of DESIGN.md and runs inside the caller's single DB
transaction (the worker's unit of work): lock the transaction row, no-op unless it is
`pending` (this is what makes redelivery harmless), lock both accounts in id order,
decide, write two immutable entries with `balance_after`, update both balances, set the
final status, write the audit row. The caller commits.

Business outcomes (inactive account, currency mismatch, limit exceeded, insufficient
funds -- checked in that order) are a `failed` status, never an exception. Exceptions
mean "could not decide" and are retried by the worker (transient) or dead-lettered
(permanent).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy.orm import Session

from db.accounts import repository as accounts_repo
from db.audit import repository as audit
from db.core.config import get_settings
from db.core.logs import get_logger
from db.core.money import format_minor
from db.ledger import limits as limits_rules
from db.models import Account, Balance, LedgerEntry, Transaction
from db.transactions import repository as transactions_repo

log = get_logger(__name__)


class LedgerCorrupted(Exception):
    """Data the posting cannot work with (a referenced account or balance row is
    missing). Retrying will not help: the message is dead-lettered."""


@dataclass(frozen=True)
class Decision:
    status: str  # completed | failed
    failure_code: str | None = None
    failure_message: str | None = None


@dataclass(frozen=True)
class Outcome:
    transaction_id: uuid.UUID
    status: str  # completed | failed | noop | missing
    failure_code: str | None = None
    # A standing order's run: the caller moves the schedule's failure streak with it.
    schedule_id: uuid.UUID | None = None


def decide(
    tx: Transaction,
    source: tuple[Account, Balance],
    target: tuple[Account, Balance],
    limits: limits_rules.Limits = limits_rules.NO_LIMITS,
    usage: limits_rules.Usage = limits_rules.Usage(),  # noqa: B008 - frozen, never mutated
) -> Decision:
    """Pure decision against locked rows: the rules a transfer must pass to move money.

    `usage` is what the source already sent (completed, read under its row lock), so the
    limit check here is the authoritative one; the API's request-time check is a hint.
    """
    (src, src_balance), (dst, _) = source, target
    for account in (src, dst):
        if account.status != "active":
            return Decision("failed", "account_inactive", f"account {account.id} is {account.status}")
    if src.currency != tx.currency or dst.currency != tx.currency:
        return Decision("failed", "currency_mismatch", "accounts and transaction currencies differ")
    breach = limits_rules.check(limits, usage, tx.amount_minor, tx.currency)
    if breach is not None:
        return Decision("failed", "limit_exceeded", breach.message)
    # System accounts (allow_negative) are unlimited; others may go down to -overdraft_limit.
    if not src_balance.allow_negative:
        floor = -src_balance.overdraft_limit_minor
        if src_balance.balance_minor - tx.amount_minor < floor:
            return Decision(
                "failed",
                "insufficient_funds",
                # Never the balance: the message is stored and shown, and a balance is private.
                f"the source account cannot cover {format_minor(tx.amount_minor, tx.currency)}",
            )
    return Decision("completed")


def post(session: Session, tx: Transaction, source: Balance, target: Balance) -> None:
    """Write the two entries and the two balances (rows already locked)."""
    source.balance_minor -= tx.amount_minor
    target.balance_minor += tx.amount_minor
    session.add_all(
        [
            LedgerEntry(
                transaction_id=tx.id,
                account_id=source.account_id,
                amount_minor=-tx.amount_minor,
                currency=tx.currency,
                balance_after_minor=source.balance_minor,
            ),
            LedgerEntry(
                transaction_id=tx.id,
                account_id=target.account_id,
                amount_minor=tx.amount_minor,
                currency=tx.currency,
                balance_after_minor=target.balance_minor,
            ),
        ]
    )


def apply_transaction(session: Session, transaction_id: uuid.UUID) -> Outcome:
    tx = transactions_repo.get_for_update(session, transaction_id)
    if tx is None:
        return Outcome(transaction_id, "missing")
    if tx.status != "pending":
        # Redelivery, sweeper re-enqueue, or cancelled meanwhile: already decided.
        return Outcome(transaction_id, "noop")

    locked = accounts_repo.lock_in_order(session, (tx.from_account_id, tx.to_account_id))
    try:
        source, target = locked[tx.from_account_id], locked[tx.to_account_id]
    except KeyError as missing:
        raise LedgerCorrupted(f"transaction {tx.id}: account {missing} has no balance row") from None

    limits, usage = limits_rules.NO_LIMITS, limits_rules.Usage()
    if limits_rules.applies(tx.type, source[0]):
        limits = limits_rules.effective(source[0], get_settings())
        if limits.needs_usage:
            usage = transactions_repo.outgoing_usage(session, tx.from_account_id, include_pending=False)
    decision = decide(tx, source, target, limits, usage)
    if decision.status == "completed":
        post(session, tx, source[1], target[1])
        tx.completed_at = func.now()
    tx.status = decision.status
    tx.failure_code = decision.failure_code
    tx.failure_message = decision.failure_message
    audit.record(
        session,
        action=f"transaction.{decision.status}",
        entity_type="transaction",
        entity_id=tx.id,
        data={"failure_code": decision.failure_code} if decision.failure_code else {},
        request_id=tx.request_id,
    )
    session.flush()
    return Outcome(tx.id, decision.status, decision.failure_code, tx.schedule_id)
