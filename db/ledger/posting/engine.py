"""The posting engine: the one code path that moves money, for single transfers, a
worker's claimed group, batch chunks and reversals alike.

One `Posting` per DB transaction:

1. lock the account set once, in ascending id order (the global order of every writer,
   so groups, chunks and single transfers wait for each other and never deadlock);
2. `decide` each item in order against the locked balances held in memory, so item 7
   sees the money item 3 moved (`rules.decide` holds every money rule);
3. `flush` the decided items in bulk: entries by COPY, balances by one
   `UPDATE ... FROM unnest`, statuses by another, then the per-flush side writes.

`post_deciding_first` is the same posting with the locks held for the money alone: it
writes the statuses and side writes from a guess against unlocked balances, then locks,
decides again and keeps the guess only if every decision is unchanged (worker groups of
plain transfers: `db/ledger/posting/transfers.py`).

The caller has locked the items' transaction rows and checked they are `pending`, and
commits. Items are anything with the attributes of a transaction row (`id`, `type`,
`from_account_id`, `to_account_id`, `amount_minor`, `currency`; `request_id` for the
audit trail).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from sqlalchemy.orm import Session

from db.core.config import get_settings
from db.core.logs import get_logger
from db.events import outbox
from db.ledger import limits as limits_rules
from db.ledger import repository as ledger_repo
from db.ledger.posting import exchange, holds
from db.ledger.posting.rules import Decision, decide
from db.transactions import repository as transactions_repo

log = get_logger(__name__)


class LedgerCorrupted(Exception):
    """Data the posting cannot work with (a referenced account or balance row is
    missing, a locked pending row changed). Retrying will not help: dead-lettered."""


@dataclass(frozen=True)
class Decided:
    item: Any
    decision: Decision


def accounts_of(items: Iterable[Any]) -> set[uuid.UUID]:
    return {account_id for item in items for account_id in (item.from_account_id, item.to_account_id)}


class Posting:
    """Balances of the locked accounts as the posting moves money, in memory, and what
    each limited source account has sent so far (read once under its row lock, then
    counted up as items complete), so every item obeys the same outgoing limits."""

    def __init__(
        self,
        session: Session,
        account_ids: Iterable[uuid.UUID],
        *,
        fx_accounts: exchange.SystemAccounts | None = None,
        lock: bool = True,
        written: Iterable[uuid.UUID] = (),
    ) -> None:
        self.session = session
        # Items whose statuses this transaction wrote before the lock (post_deciding_first):
        # left out of the limits' usage, which counts them as they are decided again.
        self._written = tuple(written)
        # The fx/fees system accounts the exchanges post through; among `account_ids`.
        self._fx_accounts = fx_accounts or {}
        # Unlocked (`lock=False`): a guess that `post_deciding_first` checks under the lock.
        read = ledger_repo.lock_accounts if lock else ledger_repo.read_accounts
        self.locked = read(session, account_ids)
        self._settings = get_settings()
        self._limits: dict[uuid.UUID, tuple[limits_rules.Limits, limits_rules.Usage]] = {}
        self._touched: set[uuid.UUID] = set()
        self._entries: list[tuple[Any, ...]] = []
        self._decided: list[Decided] = []

    def _limits_of(self, item: Any, account: Any) -> tuple[limits_rules.Limits, limits_rules.Usage]:
        if not limits_rules.applies(item.type, account):
            return limits_rules.NO_LIMITS, limits_rules.Usage()
        if account.id not in self._limits:
            limits = limits_rules.effective(account, self._settings)
            usage = (
                transactions_repo.outgoing_usage(
                    self.session, account.id, include_pending=False, excluding=self._written
                )
                if limits.needs_usage
                else limits_rules.Usage()
            )
            self._limits[account.id] = (limits, usage)
        return self._limits[account.id]

    def decide(self, item: Any) -> Decision:
        """Decide `item` against the balances as the items before it left them; a
        completed one moves the in-memory balances and queues its two entries."""
        if exchange.applies(item):
            return self._decide_exchange(item)
        try:
            source, target = self.locked[item.from_account_id], self.locked[item.to_account_id]
        except KeyError as missing:
            raise LedgerCorrupted(f"transaction {item.id}: account {missing} has no balance row") from None
        limits, usage = self._limits_of(item, source[0])
        if item.type in holds.TYPES:
            decision = holds.decide(self, item, source, target, limits, usage)
        else:
            decision = decide(item, source, target, limits, usage)
            if decision.status == "completed":
                self.move(item, source, target)
        self._decided.append(Decided(item, decision))
        return decision

    def move(self, item: Any, source: tuple[Any, Any], target: tuple[Any, Any]) -> None:
        """Move a decided item's amount in memory and queue its two entries."""
        amount = item.amount_minor
        source[1].balance_minor -= amount
        target[1].balance_minor += amount
        self._entries.append((item.id, source[0].id, -amount, item.currency, source[1].balance_minor))
        self._entries.append((item.id, target[0].id, amount, item.currency, target[1].balance_minor))
        self._touched.update((source[0].id, target[0].id))
        self.count_outgoing(source[0].id, amount)

    def count_outgoing(self, account_id: uuid.UUID, amount: int) -> None:
        """What a limited account sent (or reserved) grows with each decided item."""
        if account_id in self._limits:
            limits, usage = self._limits[account_id]
            self._limits[account_id] = (
                limits,
                limits_rules.Usage(usage.daily_outgoing_minor + amount, usage.minute_outgoing_count + 1),
            )

    def _decide_exchange(self, item: Any) -> Decision:
        """An exchange or its reversal: one leg per currency through the `fx` accounts,
        the fee to `fees` (db/ledger/posting/exchange.py), decided and queued as one."""
        lines = exchange.lines(item, self._fx_accounts)
        try:
            rows = {account_id: self.locked[account_id] for account_id, _, _ in lines}
        except KeyError as missing:
            raise LedgerCorrupted(f"transaction {item.id}: account {missing} has no balance row") from None
        source = rows[item.from_account_id][0]
        limits, usage = self._limits_of(item, source)
        decision = exchange.decide(item, rows, self._fx_accounts, limits, usage)
        if decision.status == "completed":
            for account_id, amount, currency in lines:
                balance = rows[account_id][1]
                balance.balance_minor += amount
                self._entries.append((item.id, account_id, amount, currency, balance.balance_minor))
                self._touched.add(account_id)
            self.count_outgoing(source.id, item.amount_minor)
        self._decided.append(Decided(item, decision))
        return decision

    def flush(self, *, audit_each: bool) -> list[Decided]:
        """Write everything decided since the last flush and return it. `audit_each`:
        one `transaction.completed|failed` audit row per item (single transfers and
        worker groups); batch chunks audit once per chunk instead."""
        decided = self._take_decided()
        self._write_entries_and_balances()
        # Reservations and captured holds before the statuses: the statuses' write returns
        # the rows the events render, a new hold's held amount among them.
        holds.write(self.session, decided, self.locked)
        written = _write_statuses(self.session, decided)
        _side_writes(self.session, decided, written, audit_each=audit_each)
        return decided

    def _take_decided(self) -> list[Decided]:
        decided, self._decided = self._decided, []
        return decided

    def _write_entries_and_balances(self) -> None:
        """The entries, hash-chained onto each account's head as locked (hash_chain.py),
        then every touched balance with its new head, in one UPDATE."""
        heads = {account_id: self.locked[account_id][1].head_hash for account_id in self._touched}
        ledger_repo.copy_entries(self.session, self._entries, heads)
        for account_id, head in heads.items():
            self.locked[account_id][1].head_hash = head  # the next flush chains onto it
        ledger_repo.write_balances(
            self.session,
            {account_id: self.locked[account_id][1].balance_minor for account_id in self._touched},
            heads,
        )
        self._entries, self._touched = [], set()


def _write_statuses(
    session: Session, decided: list[Decided], *, accounts_unlocked: bool = False
) -> list[Any]:
    """The decided rows' statuses; returns the rows as written (for their events)."""
    written = ledger_repo.write_decisions(
        session,
        [
            (d.item.id, d.decision.status, d.decision.failure_code, d.decision.failure_message)
            for d in decided
        ],
        accounts_unlocked=accounts_unlocked,
    )
    if len(written) != len(decided):
        # Every row was locked and pending a moment ago; anything else is a bug.
        raise LedgerCorrupted(f"{len(decided) - len(written)} locked transaction(s) changed status")
    return written


def _side_writes(session: Session, decided: list[Decided], written: list[Any], *, audit_each: bool) -> None:
    """What every flush writes beside the money, in the same transaction: the one place
    for per-flush side writes (audit rows today; event-outbox rows, hash-chain links,
    hold releases belong here too, built from the same decided items)."""
    # The outbox: each decided transaction's event, rendered as the API shows it now
    # (db/events/outbox.py), in the transaction that decides it.
    outbox.record(session, outbox.decided_events(session, written))
    if audit_each:
        ledger_repo.insert_audit_rows(
            session,
            [
                {
                    "action": f"transaction.{d.decision.status}",
                    "entity_type": "transaction",
                    "entity_id": str(d.item.id),
                    "data": {"failure_code": d.decision.failure_code} if d.decision.failure_code else {},
                    "request_id": getattr(d.item, "request_id", None),
                }
                for d in decided
            ],
        )


def post(session: Session, items: list[Any], *, audit_each: bool = True) -> list[Decided]:
    """Lock the items' accounts, decide every item in order, flush: the whole engine
    for callers that keep every decision (single transfers, groups, independent chunks)."""
    if not items:
        return []
    fx_accounts = exchange.system_accounts(session, items)
    posting = Posting(session, accounts_of(items) | set(fx_accounts.values()), fx_accounts=fx_accounts)
    for item in items:
        posting.decide(item)
    return posting.flush(audit_each=audit_each)


# What `post_deciding_first` takes: items whose decision reads nothing but their two
# accounts, balances and the source's limits usage, and whose flush writes nothing
# beside entries, balances and statuses. Not holds or captures (reservations on the
# balance rows, the hold's own row), nor exchanges (rates, the fx accounts).
DECIDABLE_FIRST = frozenset({"transfer", "credit", "debit", "reversal"})


def decides_first(items: Iterable[Any]) -> bool:
    """Batch lines are not (their status write moves the batch's counts, `batches` row
    locked by the batch_counts trigger, which a chunk takes after its accounts)."""
    return all(
        item.type in DECIDABLE_FIRST and not exchange.applies(item) and item.batch_id is None
        for item in items
    )


GUESSES = Counter(
    "ledgerq_posting_guesses_total",
    "Worker groups decided before their account locks (post_deciding_first), by whether "
    "the decisions under the locks matched (kept) or the group was posted again (missed)",
    ["outcome"],
)


def post_deciding_first(session: Session, items: list[Any], *, audit_each: bool = True) -> list[Decided]:
    """`post`, with the account locks held for the money alone: what `post` writes while
    it holds them (statuses, events, audit rows: two thirds of a worker group's time
    under the locks, and the locks are what concurrent groups queue on) is written first,
    from decisions against the accounts as last committed; then the accounts are locked,
    every item decided again, and only if each decision is the same are the entries and
    balances written. Any difference (a balance or a limit's usage moved across a
    threshold meanwhile, an account frozen) rolls the guess back to its savepoint, locks
    included, and `post` decides under the locks as always. Either way what commits is
    exactly what `post` would have written, the entries built from the locked balances.

    Only for items `decides_first` accepts. The early status write tells the analytics
    trigger (`accounts_unlocked`) to add to its backend's own shard row (migration 0019):
    a row taken before the account locks that no other transaction waits for. The
    setting stays on to commit, harmless for the same reason.

    The savepoint makes the transaction rows' update a subtransaction's while the claim
    locked them in the parent: PostgreSQL records that as a MultiXact, one per group
    rather than per row (the member set is the same for every row: 368 new MultiXact ids
    were measured for 30 groups of 100 and their test data's seeding together)."""
    if not items:
        return []
    account_ids = accounts_of(items)
    guess = Posting(session, account_ids, lock=False)
    for item in items:
        guess.decide(item)
    decided = guess._take_decided()
    savepoint = session.begin_nested()
    written = _write_statuses(session, decided, accounts_unlocked=True)
    _side_writes(session, decided, written, audit_each=audit_each)
    posting = Posting(session, account_ids, written=[item.id for item in items])
    for item in items:
        posting.decide(item)
    checked = posting._take_decided()
    if [d.decision for d in checked] != [d.decision for d in decided]:
        savepoint.rollback()
        GUESSES.labels("missed").inc()
        log.info("posting.guess_missed", size=len(items))
        return post(session, items, audit_each=audit_each)
    posting._write_entries_and_balances()  # no reservations: none of these items is a hold
    savepoint.commit()
    GUESSES.labels("kept").inc()
    return checked
