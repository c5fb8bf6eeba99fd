"""Actors of the `transactions` queue: applying transfers to the ledger (step 4).

A `transactions.apply` message is a wake-up. Its worker claims a group (its own row, if
nobody holds it, plus the oldest never-tried pending transfers, up to
LEDGERQ_APPLY_CLAIM_SIZE) by locking them, and applies the group through the posting
engine in the same DB transaction, whose decisions' UPDATE counts each fresh row's
attempt.
While its claims come back full it keeps claiming (`drain`): the API sends a wake-up
only when none is queued (workers/wake_ups.py), so most rows have no message of their
own and a queued wake-up's worker takes every row committed before it started.
A message for a row already decided is a no-op for that row, then a drain.

A message is acknowledged only once its own row is final or its own attempt failed (then
Dramatiq retries or dead-letters it, per row): a row another worker holds is waited for
at the end and decided here if that worker let it go. Exactly-once comes from the row
status under its lock (`db.ledger.posting.transfers.apply_group`).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import dramatiq
from prometheus_client import Counter, Histogram
from sqlalchemy.orm import Session

from db.core.config import get_settings
from db.core.logs import get_logger
from db.ledger.posting import Outcome
from db.ledger.posting import apply_group as post_to_ledger
from db.schedules.service import record_run_outcome
from db.session import get_engine, unit_of_work
from db.transactions import dead_letters
from db.transactions import repository as transactions_repo
from workers import wake_ups

log = get_logger(__name__)

APPLIED = Counter(
    "ledgerq_transactions_applied_total",
    "Transactions decided by workers (a count: amounts are never exported as floats)",
    ["status", "failure_code", "type", "currency"],
)
DEAD_LETTERED = Counter("ledgerq_transactions_dead_lettered_total", "Transactions dead-lettered")
APPLY_SECONDS = Histogram("ledgerq_transaction_apply_seconds", "Time to apply one transaction")

# How long one message keeps claiming full groups before it hands over to a fresh
# wake-up: far below the actor time limit and the broker heartbeat timeout (a busy
# worker with a full prefetch buffer sends no heartbeat), so a long backlog never
# makes the broker think the worker died.
DRAIN_SECONDS = 5.0


def record_dead_letter(kwargs: dict, reason: str) -> None:
    """The `on_dead_letter` hook: the message failed for good; record it on the row."""
    with unit_of_work() as uow:
        changed = dead_letters.record(uow.session, uuid.UUID(kwargs["transaction_id"]), reason)
    if changed:
        DEAD_LETTERED.inc()


@dramatiq.actor(actor_name="transactions.apply", queue_name="transactions", on_dead_letter=record_dead_letter)
def apply_transaction(transaction_id: str) -> None:
    """Make sure this message's transaction is decided exactly once, deciding up to
    LEDGERQ_APPLY_CLAIM_SIZE pending ones with it, then the rest that is pending."""
    settings = get_settings()
    tx_id = uuid.UUID(transaction_id)
    if settings.apply_linger_ms and tx_id not in _decided_here and wake_ups.queued(apply_transaction):
        # Before `process` clears the wake-up flag: senders keep coalescing onto this
        # message meanwhile, and its claims take their rows along (workers/wake_ups.py).
        # Not for a row already decided here, nor when nobody is coalescing (the
        # sweeper's and scheduled releases' bursts of messages): a wait for nothing.
        _linger(settings.apply_linger_ms / 1000)
    process(tx_id, claim_size=settings.apply_claim_size)


def _linger(seconds: float) -> None:
    time.sleep(seconds)


@dramatiq.actor(actor_name="transactions.wake", queue_name="transactions")
def wake() -> None:
    """A wake-up that answers for no row, sent by a worker whose claims came back full
    (more is pending: another thread joins) or that stopped draining: claim and apply
    what is pending. Its transient failures are retried like any message's; the rows it
    claimed are given messages of their own when a group fails."""
    wake_ups.started(wake)
    drain(claim_size=get_settings().apply_claim_size)


class _CoalescedApply:
    """What the API (and the bench's backlog) enqueue for a new row: `transactions.apply`
    for it, sent only when no wake-up is queued (workers/wake_ups.py); otherwise the
    queued one claims the row. Satisfies db.session.Sendable."""

    actor_name = "transactions.apply"

    def send_with_options(self, *, args=(), kwargs=None, delay=None, **options) -> Any:
        if delay or wake_ups.claim_sending(apply_transaction):
            return apply_transaction.send_with_options(args=args, kwargs=kwargs, delay=delay, **options)
        return None


wake_up_for_new_row = _CoalescedApply()


def _wake_another() -> None:
    """More is pending than this message takes: a `transactions.wake`, unless one is
    queued already. A failure to send is logged: the sweeper still has the rows."""
    try:
        if wake_ups.claim_sending(wake):
            wake.send()
    except Exception as error:  # noqa: BLE001 - the rows are durable; the sweeper re-sends
        log.warning("transactions.wake_not_sent", error=str(error)[:200])


# What a posting decides a row to be (a hold's `held` among them): never `pending` again.
DECIDED = ("completed", "held", "failed")


class _RecentlyDecided:
    """Ids whose `completed`/`held`/`failed` decision this process committed, the newest
    `size` of them. None of them is ever `pending` again, so a message for one of these ids
    (the wake-ups of the rows a group took along) is a no-op without asking the
    database. A miss costs nothing but the one read it saves."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._ids: dict[uuid.UUID, None] = {}
        self._lock = threading.Lock()

    def add(self, ids: list[uuid.UUID]) -> None:
        with self._lock:
            self._ids.update(dict.fromkeys(ids))
            while len(self._ids) > self._size:
                del self._ids[next(iter(self._ids))]

    def __contains__(self, tx_id: uuid.UUID) -> bool:
        return tx_id in self._ids


_decided_here = _RecentlyDecided(100_000)


def process(tx_id: uuid.UUID, *, claim_size: int) -> None:
    """The actor's body: decide `tx_id` (and up to `claim_size` - 1 others with it),
    then drain what else is pending."""
    # Before any claim: a row committed from now on has its sender send a wake-up.
    wake_ups.started(apply_transaction)
    try:
        more = decide_own(tx_id, claim_size)
    except Exception:
        # Retried (after a backoff) or dead-lettered: someone else drains meanwhile.
        _wake_another()
        raise
    if more:
        drain(claim_size=claim_size)


def decide_own(tx_id: uuid.UUID, claim_size: int) -> bool:
    """This message's row decided (with a group), or found decided; True when more may be
    pending (the group's claim came back full, or the row needed no group)."""
    transaction_id = str(tx_id)
    if tx_id in _decided_here:
        log.debug("transactions.applied", id=transaction_id, status="noop")
        return True
    started = time.perf_counter()
    # One autocommit statement: for a row an earlier group decided, that is all it costs.
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        status, _ = transactions_repo.begin_attempt(connection, tx_id)
    if status != "pending":
        # Most of these are the wake-ups of rows another group decided: not worth a line each.
        log.debug("transactions.applied", id=transaction_id, status="noop" if status else "missing")
        return True

    claimed: list[uuid.UUID] = []
    outcomes: list[Outcome] = []
    more = False
    try:
        outcomes = _claim_and_apply(tx_id, claim_size, claimed)
        more = len([i for i in claimed if i != tx_id]) >= claim_size - 1
    except Exception as exc:
        # The group's transaction rolled back, the fresh rows' attempt counts with it.
        others = [i for i in claimed if i != tx_id]
        _give_back(others)
        if not claimed or claimed == [tx_id]:
            raise  # the own attempt failed: retried or dead-lettered by Dramatiq
        # One bad row must not fail the others: they stay pending (their attempt is
        # counted) for messages of their own; this message now answers for its row only.
        log.warning("transactions.group_failed", id=transaction_id, size=len(claimed), error=str(exc)[:300])
        outcomes = []
    if tx_id not in {o.transaction_id for o in outcomes}:
        # Another worker held the row (or the group failed): wait for its lock, then
        # decide it here unless that worker did.
        outcomes += _apply([tx_id])

    elapsed = time.perf_counter() - started
    _record(outcomes, elapsed)
    own = next(o for o in outcomes if o.transaction_id == tx_id)
    log.info(
        "transactions.applied",
        id=transaction_id,
        status=own.status,
        failure_code=own.failure_code,
        group=sum(o.status in DECIDED for o in outcomes),
        ms=round(elapsed * 1000, 2),
    )
    return more


def drain(*, claim_size: int) -> None:
    """Claim and apply groups of never-tried pending transfers until a claim comes back
    short (nothing claimable is left but rows other workers hold), for at most
    DRAIN_SECONDS; then a fresh wake-up carries on. After each full group another
    wake-up is offered, so idle threads join a backlog."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while True:
        started = time.perf_counter()
        claimed: list[uuid.UUID] = []
        try:
            with unit_of_work() as uow:
                claimed.extend(transactions_repo.claim_fresh(uow.session.connection(), size=claim_size))
                outcomes = _post(uow.session, claimed) if claimed else []
        except Exception as exc:
            # Rolled back: the rows get their attempt counted and a message each, which
            # retries (or dead-letters) each on its own.
            _give_back(claimed)
            log.warning("transactions.group_failed", size=len(claimed), error=str(exc)[:300])
            return
        if claimed:
            elapsed = time.perf_counter() - started
            _record(outcomes, elapsed)
            log.info("transactions.group_applied", group=len(claimed), ms=round(elapsed * 1000, 2))
        if len(claimed) < claim_size:
            return
        _wake_another()
        if time.monotonic() > deadline:
            return


def _record(outcomes: list[Outcome], elapsed: float) -> None:
    decided = [o for o in outcomes if o.status in DECIDED]
    _decided_here.add([o.transaction_id for o in decided])
    for outcome in decided:
        APPLIED.labels(outcome.status, outcome.failure_code or "", outcome.type, outcome.currency).inc()
    if decided:
        APPLY_SECONDS.observe(elapsed / len(decided))  # per transfer: a group's time shared


def _claim_and_apply(tx_id: uuid.UUID, claim_size: int, claimed: list[uuid.UUID]) -> list[Outcome]:
    """One DB transaction: claim a group (its rows stay locked until the commit) and apply
    it. `claimed` receives the group as soon as it is claimed, for the caller's failure
    path."""
    with unit_of_work() as uow:
        _, ids = transactions_repo.claim_for_apply(uow.session.connection(), tx_id, size=claim_size)
        claimed.extend(ids)
        return _post(uow.session, ids) if ids else []


def _give_back(claimed: list[uuid.UUID]) -> None:
    """The rows of a group that rolled back: one more attempt each (so no other group
    claims them again: a poison row fails only itself from now on), and a message each,
    since a row whose wake-up was coalesced has none of its own."""
    if not claimed:
        return
    try:
        with unit_of_work() as uow:
            transactions_repo.count_failed_attempts(uow.session, claimed)
            for tx_id in claimed:
                uow.enqueue(apply_transaction, transaction_id=str(tx_id))
    except Exception as error:  # the original failure matters more; the sweeper re-sends
        log.warning("transactions.attempts_not_counted", size=len(claimed), error=str(error)[:200])


def _apply(transaction_ids: list[uuid.UUID]) -> list[Outcome]:
    """One DB transaction: the rows through the engine (no claim, no attempt counted)."""
    with unit_of_work() as uow:
        return _post(uow.session, transaction_ids)


def _post(session: Session, transaction_ids: list[uuid.UUID]) -> list[Outcome]:
    """The rows through the engine, and each standing-order run's outcome recorded with them."""
    outcomes = post_to_ledger(session, transaction_ids)
    # In schedule id order: two groups locking the same schedules never deadlock.
    for outcome in sorted(outcomes, key=lambda o: str(o.schedule_id)):
        if outcome.schedule_id is not None:
            record_run_outcome(
                session,
                outcome.schedule_id,
                transaction_id=outcome.transaction_id,
                status=outcome.status,
                failure_code=outcome.failure_code,
            )
    return outcomes
