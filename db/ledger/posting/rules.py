"""Every money rule a posting must pass, in one place, as pure functions of locked rows.

Checked in this order, the first broken rule naming the failure:

1. `account_inactive`: both accounts must be `active` (not frozen, not closed);
2. `currency_mismatch`: both accounts and the transaction share one currency;
3. `limit_exceeded`: the source's outgoing limits (`db.ledger.limits`), against what it
   already sent, read under its row lock;
4. `insufficient_funds`: a user account may go down to `-overdraft_limit` and no further
   (system accounts, `allow_negative`, have no floor), counting what its holds reserve:
   spendable is balance - held (`balances.held_minor`, on the row already locked);
5. `amount_out_of_range`: neither balance may leave PostgreSQL's BIGINT range. Single
   amounts are bounded at the request; sums are not, and a credit that would overflow
   the currency's system account must be a decision, not a `NumericValueOutOfRange`
   that dead-letters every later credit in that currency.

A broken rule is a `failed` decision with its code, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from db.core.money import format_minor
from db.ledger import limits as limits_rules

# PostgreSQL BIGINT, the type of every balance and entry amount.
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class Decision:
    status: str  # completed | failed
    failure_code: str | None = None
    failure_message: str | None = None


COMPLETED = Decision("completed")


def decide(
    tx: Any,
    source: tuple[Any, Any],
    target: tuple[Any, Any],
    limits: limits_rules.Limits = limits_rules.NO_LIMITS,
    usage: limits_rules.Usage = limits_rules.Usage(),  # noqa: B008 - frozen, never mutated
) -> Decision:
    """The decision for `tx` (amount_minor, currency) moving money from `source` to
    `target`, each an (account, balance) pair of locked rows, ORM or plain.

    `usage` is what the source already sent (completed, read under its row lock), so the
    limit check here is the authoritative one; the API's request-time check is a hint.
    """
    (src, src_balance), (dst, dst_balance) = source, target
    for account in (src, dst):
        if account.status != "active":
            return Decision("failed", "account_inactive", f"account {account.id} is {account.status}")
    if src.currency != tx.currency or dst.currency != tx.currency:
        return Decision("failed", "currency_mismatch", "accounts and transaction currencies differ")
    breach = limits_rules.check(limits, usage, tx.amount_minor, tx.currency)
    if breach is not None:
        return Decision("failed", "limit_exceeded", breach.message)
    after_source = src_balance.balance_minor - tx.amount_minor
    after_target = dst_balance.balance_minor + tx.amount_minor
    held = src_balance.held_minor or 0  # None on an ORM row built in memory (a unit test)
    if not src_balance.allow_negative and after_source - held < -src_balance.overdraft_limit_minor:
        return Decision(
            "failed",
            "insufficient_funds",
            # Never the balance: the message is stored and shown, and a balance is private.
            f"the source account cannot cover {format_minor(tx.amount_minor, tx.currency)}",
        )
    for account, after in ((src, after_source), (dst, after_target)):
        if not BIGINT_MIN <= after <= BIGINT_MAX:
            return Decision(
                "failed",
                "amount_out_of_range",
                f"the balance of account {account.id} would leave the range a balance can hold",
            )
    return COMPLETED
