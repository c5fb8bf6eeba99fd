"""Property-based tests (hypothesis): random sequences of money operations through the
real services, actors and posting engine, against real PostgreSQL, end with every
invariant of DESIGN.md holding and `ledgerq verify` agreeing.

Each example opens fresh accounts in one currency (JPY 0, USD 2, KWD and BHD 3, CLF 4
decimals) and draws a sequence of: credits, debits, transfers (some scheduled), applies
of one transfer (checked against an oracle of the rules), applies of a claimed group,
redeliveries of decided messages, cancels, reversals, releases of scheduled transfers,
and batches (independent or atomic) applied chunk by chunk, each chunk delivered twice.
Amounts are drawn at the edges: one minor unit, the configured maximum, and in between.

The default run is derandomized and small (a couple of minutes at most); the long mode:

    HYPOTHESIS_PROFILE=long pytest tests/workers/test_ledger_properties.py
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.core.config import get_settings
from db.core.currencies import exponent
from db.core.errors import DomainError
from db.core.money import format_minor, to_minor
from tests.fixtures.ledger import sql

PROFILES = {
    "default": {"max_examples": 12, "derandomize": True},
    "long": {"max_examples": 400, "derandomize": False},
}
PROFILE = PROFILES[os.environ.get("HYPOTHESIS_PROFILE", "default")]

CURRENCIES = ["JPY", "USD", "KWD", "BHD", "CLF"]
ACCOUNTS = 3  # user accounts per example: 0 and 1 owned by one customer, 2 by another


def amounts(currency: str) -> st.SearchStrategy[int]:
    """Minor units at the edges: the smallest unit, the maximum, small and anywhere."""
    largest = to_minor(get_settings().max_amount, currency)
    return st.one_of(
        st.just(1),
        st.just(largest),
        st.integers(1, 10 ** (exponent(currency) + 3)),
        st.integers(1, largest),
    )


def operations(currency: str) -> st.SearchStrategy[list[tuple]]:
    account = st.integers(0, ACCOUNTS - 1)
    pick = st.integers(0, 50)
    amount = amounts(currency)
    line = st.tuples(account, account, amount)
    op = st.one_of(
        st.tuples(st.just("credit"), account, amount),
        st.tuples(st.just("debit"), account, amount),
        st.tuples(st.just("transfer"), account, account, amount, st.booleans()),
        st.tuples(st.just("apply"), pick),
        st.tuples(st.just("apply_group"), pick, st.integers(2, 8)),
        st.tuples(st.just("redeliver"), pick),
        st.tuples(st.just("cancel"), pick),
        st.tuples(st.just("reverse"), pick),
        st.tuples(st.just("release")),
        st.tuples(
            st.just("batch"),
            st.lists(line, min_size=1, max_size=6),
            st.sampled_from(["independent", "atomic"]),
            st.integers(1, 3),
        ),
    )
    return st.lists(op, min_size=1, max_size=24)


@st.composite
def scenarios(draw):
    currency = draw(st.sampled_from(CURRENCIES))
    return currency, draw(operations(currency))


class World:
    """One example's users and accounts, and what it submitted."""

    def __init__(self, make, currency: str) -> None:
        self.currency = currency
        self.finance = make.user("finance")
        owners = [make.user(), make.user()]
        self.owner = [owners[0], owners[0], owners[1]]
        self.accounts = [make.account(self.owner[i], currency) for i in range(ACCOUNTS)]
        self.transactions: list[str] = []  # every accepted transaction id, oldest first
        self.batches: list[str] = []

    # --- submissions, through the services the API calls --------------------------------

    def submit(self, user, type_: str, minor: int, scheduled: bool = False, **accounts) -> None:
        from db.session import unit_of_work
        from db.transactions.service import MoneyMovement, submit

        movement = MoneyMovement(
            type=type_,
            amount=format_minor(minor, self.currency),
            currency=self.currency,
            scheduled_for=datetime.now(UTC) + timedelta(hours=1) if scheduled else None,
            **accounts,
        )
        try:
            with unit_of_work() as uow:
                made = submit(
                    uow.session, user.principal, movement, idempotency_key=None, settings=get_settings()
                )
                self.transactions.append(str(made.record.id))
        except DomainError:
            pass  # refused at request time (a 4xx): recorded nothing, checked at the end

    def reverse(self, tx_id: str) -> None:
        from db.session import unit_of_work
        from db.transactions.service import reverse

        try:
            with unit_of_work() as uow:
                made = reverse(uow.session, self.finance.principal, uuid.UUID(tx_id), idempotency_key=None)
                self.transactions.append(str(made.record.id))
        except DomainError:
            pass  # not completed, already reversed, a reversal, or the money is gone

    def cancel(self, tx_id: str) -> None:
        from db.session import unit_of_work
        from db.transactions.service import cancel

        creator = sql("SELECT created_by FROM transactions WHERE id = :id", id=tx_id)[0][0]
        user = self.finance if creator == self.finance.id else next(u for u in self.owner if u.id == creator)
        try:
            with unit_of_work() as uow:
                cancel(uow.session, user.principal, uuid.UUID(tx_id))
        except DomainError:
            pass  # final already: 409

    def batch(self, lines: list[tuple[int, int, int]], mode: str) -> str | None:
        from db.batches import service as batches
        from db.session import unit_of_work

        items = [
            {
                "from_account_id": str(self.accounts[a]),
                "to_account_id": str(self.accounts[b]),
                "amount": format_minor(minor, self.currency),
                "currency": self.currency,
                "reference": uuid.uuid4().hex,  # unique content: never a duplicate upload
            }
            for a, b, minor in lines
        ]
        settings_ = get_settings()
        try:
            with unit_of_work() as uow:
                made = batches.submit(
                    uow.session,
                    self.finance.principal,
                    batches.BatchRequest(mode=mode),
                    batches.scan_json(items, settings_),
                    idempotency_key=None,
                    settings=settings_,
                )
                batch_id = str(made.record.id)
        except DomainError:
            return None
        self.batches.append(batch_id)
        return batch_id

    # --- reading ------------------------------------------------------------------------

    def statuses(self) -> dict[str, str]:
        rows = sql(
            "SELECT id, status FROM transactions WHERE id = ANY(CAST(:ids AS uuid[]))", ids=self.transactions
        )
        return {str(i): s for i, s in rows}

    def with_status(self, pick: int, wanted: tuple[str, ...]) -> str | None:
        statuses = self.statuses()
        found = [t for t in self.transactions if statuses.get(t) in wanted]
        return found[pick % len(found)] if found else None

    def snapshot(self) -> tuple:
        """Every row a decision writes, for 'nothing changed'."""
        return (
            sql("SELECT id, status, failure_code FROM transactions ORDER BY id"),
            sql("SELECT count(*), coalesce(max(id), 0) FROM ledger_entries"),
            sql("SELECT account_id, balance_minor FROM balances ORDER BY account_id"),
        )


# --- applying, through the actors' functions ----------------------------------------------


def apply_one_checked(world: World, tx_id: str) -> None:
    """The `transactions.apply` actor for one row (a group of one), and the rules' oracle:
    the decision and the balances after it follow from the balances before. Its own row
    only (`decide_own`): the actor then drains other pending rows, which the oracle
    does not follow."""
    from workers.transactions import decide_own

    (type_, minor, source, target, system), *_ = sql(
        "SELECT t.type, t.amount_minor, t.from_account_id, t.to_account_id, s.allow_negative"
        " FROM transactions t JOIN balances s ON s.account_id = t.from_account_id WHERE t.id = :id",
        id=tx_id,
    )
    before = dict(
        sql("SELECT account_id, balance_minor FROM balances WHERE account_id IN (:a, :b)", a=source, b=target)
    )
    decide_own(uuid.UUID(tx_id), 1)
    status, code = sql("SELECT status, failure_code FROM transactions WHERE id = :id", id=tx_id)[0]
    after = dict(
        sql("SELECT account_id, balance_minor FROM balances WHERE account_id IN (:a, :b)", a=source, b=target)
    )
    covered = system or before[source] >= minor  # user accounts here have no overdraft
    if covered:
        assert (status, code) == ("completed", None), (type_, minor, before)
        assert after == {source: before[source] - minor, target: before[target] + minor}
    else:
        assert (status, code) == ("failed", "insufficient_funds"), (type_, minor, before)
        assert after == before


def apply_chunks(batch_id: str, chunk_size: int) -> None:
    """`batches.apply_chunk` chunk after chunk from the batch's cursor, every chunk
    delivered twice (the second delivery must change nothing)."""
    from db.batches import posting
    from db.batches import repository as batches_repo
    from db.session import unit_of_work

    while True:
        with unit_of_work() as uow:
            batch = batches_repo.get(uow.session, uuid.UUID(batch_id))
            assert batch is not None
            if batch.status != "processing":
                return
            line = batch.next_line
        for delivery in range(2):
            with unit_of_work() as uow:
                outcome = posting.apply_chunk(uow.session, uuid.UUID(batch_id), line, chunk_size=chunk_size)
            assert outcome.status == ("applied" if delivery == 0 else "noop"), outcome


def drain(world: World) -> None:
    """Release what is scheduled, finish every batch, decide every pending row."""
    from workers.maintenance import release_due_scheduled

    release_due_scheduled(now=datetime.now(UTC) + timedelta(days=1))
    for batch_id in world.batches:
        apply_chunks(batch_id, chunk_size=2)
    for tx_id in world.transactions:
        if world.statuses()[tx_id] == "pending":
            apply_one_checked(world, tx_id)


def run(world: World, ops: list[tuple]) -> None:
    from workers.maintenance import release_due_scheduled
    from workers.transactions import decide_own, process

    accounts = world.accounts
    for op in ops:
        kind = op[0]
        if kind == "credit":
            world.submit(world.finance, "credit", op[2], account_id=accounts[op[1]])
        elif kind == "debit":
            world.submit(world.finance, "debit", op[2], account_id=accounts[op[1]])
        elif kind == "transfer":
            _, a, b, minor, scheduled = op
            world.submit(
                world.owner[a],
                "transfer",
                minor,
                scheduled,
                from_account_id=accounts[a],
                to_account_id=accounts[b],
            )
        elif kind == "apply":
            tx_id = world.with_status(op[1], ("pending",))
            if tx_id:
                apply_one_checked(world, tx_id)
        elif kind == "apply_group":
            tx_id = world.with_status(op[1], ("pending",))
            if tx_id:
                process(uuid.UUID(tx_id), claim_size=op[2])
                assert world.statuses()[tx_id] in ("completed", "failed")
        elif kind == "redeliver":
            tx_id = world.with_status(op[1], ("completed", "failed", "cancelled"))
            if tx_id:
                before = world.snapshot()
                # The message's own work; the actor would then drain other pending rows.
                decide_own(uuid.UUID(tx_id), 4)
                assert world.snapshot() == before, "a redelivered message changed something"
        elif kind == "cancel":
            tx_id = world.with_status(op[1], ("pending", "scheduled"))
            if tx_id:
                world.cancel(tx_id)
                assert world.statuses()[tx_id] == "cancelled"
        elif kind == "reverse":
            tx_id = world.with_status(op[1], ("completed",))
            if tx_id:
                world.reverse(tx_id)
        elif kind == "release":
            release_due_scheduled(now=datetime.now(UTC) + timedelta(days=1))
        elif kind == "batch":
            _, lines, mode, chunk_size = op
            batch_id = world.batch(lines, mode)
            if batch_id:
                apply_chunks(batch_id, chunk_size)
    drain(world)


# --- the invariants, computed here from the tables (independently of verify) ----------


def assert_invariants(world: World) -> None:
    from tests.fixtures.ledger import ledger_problems

    # 1. Per currency, the balances sum to zero.
    assert (
        sql(
            "SELECT currency, sum(balance_minor) FROM balances GROUP BY currency HAVING sum(balance_minor) <> 0"
        )
        == []
    )
    # 2. Each balance is the sum of its entries, and balance_after is the running sum.
    assert (
        sql(
            "SELECT b.account_id FROM balances b LEFT JOIN ledger_entries e ON e.account_id = b.account_id"
            " GROUP BY b.account_id, b.balance_minor HAVING b.balance_minor <> coalesce(sum(e.amount_minor), 0)"
        )
        == []
    )
    assert (
        sql(
            "SELECT id FROM (SELECT id, balance_after_minor, sum(amount_minor) OVER"
            " (PARTITION BY account_id ORDER BY id) AS running FROM ledger_entries) r"
            " WHERE balance_after_minor <> running"
        )
        == []
    )
    # 3. A completed transaction has exactly its two entries, taken from its source and
    #    given to its target; any other status has none. (No transaction applied twice.)
    entries: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for tx_id, account_id, minor in sql(
        "SELECT transaction_id, account_id, amount_minor FROM ledger_entries"
    ):
        entries[str(tx_id)].append((str(account_id), minor))
    for tx_id, status, source, target, minor in sql(
        "SELECT id, status, from_account_id, to_account_id, amount_minor FROM transactions"
    ):
        expected = sorted([(str(source), -minor), (str(target), minor)]) if status == "completed" else []
        assert sorted(entries.get(str(tx_id), [])) == expected, (tx_id, status)
    # 4. No user account below zero (none has an overdraft here).
    assert sql("SELECT b.account_id FROM balances b WHERE NOT b.allow_negative AND b.balance_minor < 0") == []
    # 6. Every accepted request is final (nothing left pending or scheduled after drain).
    assert sorted(set(world.statuses().values()) - {"completed", "failed", "cancelled"}) == []
    for batch_id in world.batches:
        status = sql("SELECT status FROM batches WHERE id = :id", id=batch_id)[0][0]
        assert status in ("completed", "completed_with_errors", "failed"), (batch_id, status)
    # 3'. A reversal moved back a completed transaction, at most once.
    assert (
        sql(
            "SELECT reverses FROM transactions WHERE reverses IS NOT NULL GROUP BY reverses HAVING count(*) > 1"
        )
        == []
    )
    # And `ledgerq verify` agrees.
    assert ledger_problems() == []


@settings(
    **PROFILE,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(scenario=scenarios())
def test_random_sequences_keep_every_invariant(make, scenario):
    currency, ops = scenario
    world = World(make, currency)
    run(world, ops)
    assert_invariants(world)
