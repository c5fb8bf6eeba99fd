"""Holds and captures through the posting engine (two-phase transfers, db/holds).

A hold is decided exactly like a transfer (`rules.decide`: statuses, currency, limits,
funds counting what is already held) but moves no money: the source's `held_minor`
grows by the amount, on the balance row the engine locked, and the hold becomes `held`.
Every later funds check of that account (transfers, debits, batch lines, other holds)
reads the reservation from the same locked row: spendable = balance - held.

A capture moves money like a transfer (two entries) for a hold it names: the hold's
whole reservation is released and the captured amount moved, in the same step, so the
remainder is released at once. It is not checked against the limits again (the hold
was), but accounts must still be active: a frozen or closed account's hold cannot be
captured (the capture fails `account_inactive`; the hold stays `held`). The hold's row
was locked before the accounts (`with_holds`), in the order every hold writer uses
(transaction rows, then accounts), so voids and the expiry tick cannot change it
under the decision.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from db.core.money import format_minor
from db.holds import repository as holds_repo
from db.ledger import limits as limits_rules
from db.ledger.posting.rules import BIGINT_MAX, Decision
from db.ledger.posting.rules import decide as decide_transfer

if TYPE_CHECKING:
    from db.ledger.posting.engine import Decided, Posting

TYPES = frozenset({"hold", "capture"})
HELD = Decision("held")


def with_holds(session: Session, rows: list[Any]) -> list[Any]:
    """`rows` as the engine's items, each capture carrying its hold (`.hold`, the row
    locked now, before the engine locks accounts; None if missing)."""
    hold_ids = sorted({row.captures for row in rows if row.type == "capture" and row.captures})
    if not hold_ids:
        return rows
    found = holds_repo.lock_holds(session, hold_ids)
    return [
        SimpleNamespace(**row._asdict(), hold=found.get(row.captures)) if row.type == "capture" else row
        for row in rows
    ]


def decide(
    posting: Posting,
    item: Any,
    source: tuple[Any, Any],
    target: tuple[Any, Any],
    limits: limits_rules.Limits,
    usage: limits_rules.Usage,
) -> Decision:
    if item.type == "hold":
        return _decide_hold(posting, item, source, target, limits, usage)
    return _decide_capture(posting, item, source, target)


def _decide_hold(posting: Posting, item: Any, source, target, limits, usage) -> Decision:
    decision = decide_transfer(item, source, target, limits, usage)
    if decision.status != "completed":
        return decision
    balance = source[1]
    if (balance.held_minor or 0) + item.amount_minor > BIGINT_MAX:
        return Decision(
            "failed", "amount_out_of_range", "the account's holds would leave the range it can hold"
        )
    balance.held_minor = (balance.held_minor or 0) + item.amount_minor
    posting.count_outgoing(source[0].id, item.amount_minor)
    return HELD


def _decide_capture(posting: Posting, item: Any, source, target) -> Decision:
    hold = getattr(item, "hold", None)
    if hold is None or hold.type != "hold":
        from db.ledger.posting.engine import LedgerCorrupted

        raise LedgerCorrupted(f"capture {item.id}: its hold {item.captures} is missing")
    if (hold.from_account_id, hold.to_account_id, hold.currency) != (
        item.from_account_id,
        item.to_account_id,
        item.currency,
    ):
        from db.ledger.posting.engine import LedgerCorrupted

        raise LedgerCorrupted(f"capture {item.id} does not match its hold {hold.id}")
    # The request checked both under the hold's lock; re-checked under the lock again
    # (a failed decision, not an exception: nothing is corrupt, the capture just cannot be).
    if hold.status != "held":
        return Decision("failed", "insufficient_funds", f"the hold is {hold.status}: it reserves nothing")
    if item.amount_minor > hold.held_amount_minor:
        return Decision(
            "failed",
            "insufficient_funds",
            f"the hold reserves only {format_minor(hold.held_amount_minor, hold.currency)}",
        )
    balance = source[1]
    balance.held_minor -= hold.held_amount_minor  # release the whole reservation ...
    decision = decide_transfer(item, source, target)  # ... no limits: checked at hold time
    if decision.status != "completed":
        balance.held_minor += hold.held_amount_minor  # the hold stays `held`, reserved
        return decision
    posting.move(item, source, target)  # ... and move what is captured
    hold.status = "captured"  # in memory: a second capture in this posting finds it taken
    return decision


def write(session: Session, decided: list[Decided], locked: dict[uuid.UUID, tuple[Any, Any]]) -> None:
    """The flush's hold writes: the reservations of the accounts whose holds changed (from
    the locked rows in memory), each new `held` hold's held amount, each captured hold."""
    held = [d.item for d in decided if d.item.type == "hold" and d.decision.status == "held"]
    captures = [d.item for d in decided if d.item.type == "capture" and d.decision.status == "completed"]
    if not held and not captures:
        return
    accounts = {item.from_account_id for item in (*held, *captures)}
    holds_repo.write_held(session, {account_id: locked[account_id][1].held_minor for account_id in accounts})
    holds_repo.mark_held(session, [item.id for item in held])
    changed = holds_repo.mark_captured(session, [(item.captures, item.amount_minor) for item in captures])
    if changed != len(captures):
        from db.ledger.posting.engine import LedgerCorrupted

        raise LedgerCorrupted(f"{len(captures) - changed} locked hold(s) changed status")
    holds_repo.audit_captured(session, captures)
