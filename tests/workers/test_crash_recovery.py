"""DESIGN.md failure model, row 1: a worker SIGKILLed while it holds messages.

Real `ledgerq worker` processes (a Dramatiq parent and its child) consume the real Redis
broker. A row lock held by the test keeps the worker's threads inside the ledger posting,
so at the moment of the SIGKILL the worker has messages it fetched and never acked, and
database transactions it never committed. The messages must come back (from the broker
once the dead worker's heartbeat expires, and/or from the sweeper) and every transfer must
be decided exactly once.
"""

from __future__ import annotations

import signal
import time
import uuid

import psutil
import pytest
from sqlalchemy import func, select, text

from db.ledger.verify import verify_ledger
from db.models import LedgerEntry, Transaction
from db.session import get_engine, unit_of_work
from tests.fixtures.broker import flush_namespace
from tests.fixtures.http import accepted, transfer
from tests.fixtures.ledger import balance, wait_final
from tests.fixtures.processes import LEDGERQ, Processes, dramatiq_workers, kill_group, wait_for

pytestmark = pytest.mark.slow

TRANSFERS = 40


@pytest.fixture
def procs(tmp_path):
    processes = Processes(tmp_path)
    yield processes
    processes.kill_all()


def start_worker(procs: Processes, **env: str):
    # No metrics exposition fork: its fixed port would clash between runs.
    env = {"WORKER_METRICS_PORT": "0", **env}
    return procs.start("worker", [LEDGERQ, "worker", "--processes", "1", "--threads", "2"], env=env)


def credit_probe(client, make, finance) -> None:
    """A credit through the API that only a live worker completes: proves it is consuming."""
    probe_account = make.account(make.user())
    response = client.post(
        "/api/v1/transactions/credit",
        json={"account_id": str(probe_account), "amount": "1.00", "currency": "USD"},
        headers=finance.headers,
    )
    assert response.status_code == 202, response.json
    assert wait_final([response.json["id"]], timeout=30) == {response.json["id"]: "completed"}


def lock_waiters() -> int:
    """Backends of this database waiting for a row lock (our worker's threads)."""
    with get_engine().connect() as connection:
        return connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE  # dead, not yet reaped by init
    except psutil.NoSuchProcess:
        return True


def attempts(tx_ids) -> dict[str, int]:
    with unit_of_work() as uow:
        rows = uow.session.execute(
            select(Transaction.id, Transaction.attempts).where(Transaction.id.in_(tx_ids))
        ).all()
    return {str(tx_id): n for tx_id, n in rows}


def entries_per_transaction(tx_ids) -> dict[str, int]:
    with unit_of_work() as uow:
        rows = uow.session.execute(
            select(LedgerEntry.transaction_id, func.count())
            .where(LedgerEntry.transaction_id.in_(tx_ids))
            .group_by(LedgerEntry.transaction_id)
        ).all()
    return {str(tx_id): n for tx_id, n in rows}


def kill_worker_holding_messages(procs, client, make, *, prefetch: str, scheduler: bool, lose_redis=False):
    """Shared scenario; returns what the assertions need."""
    finance = make.user("finance")
    alice, bob = make.user(), make.user()
    source = make.account(alice, balance="100.00")
    target = make.account(bob)

    # This worker waits as long as it takes for the lock (the default 5 s lock timeout
    # would turn a slow CI machine into retries and dead letters); its time limit stays
    # above the lock timeout, as the settings require.
    first = start_worker(
        procs,
        WORKER_PREFETCH=prefetch,
        LEDGERQ_DB_LOCK_TIMEOUT_MS="120000",
        WORKER_APPLY_TIME_LIMIT_MS="180000",
    )
    credit_probe(client, make, finance)
    dramatiq_parent, children = dramatiq_workers(psutil.Process(first.pid))
    assert dramatiq_parent is not None and len(children) == 1, procs.logs()

    lock = get_engine().connect()
    try:
        transaction = lock.begin()
        # NO KEY UPDATE: conflicts with the worker's lock on the account (NO KEY UPDATE),
        # not with the KEY SHARE the API's insert takes for its foreign key, so the
        # requests below are still accepted while every posting from this account waits.
        lock.execute(text("SELECT 1 FROM accounts WHERE id = :id FOR NO KEY UPDATE"), {"id": source})
        tx_ids = []
        for i in range(TRANSFERS):
            tx_ids.append(accepted(transfer(client, alice, source, target, "3.00", reference=f"crash-{i}")))
        # Both threads are inside the apply: their claimed rows locked, waiting for the
        # account (or for a row the other thread's group holds), messages fetched and unacked.
        wait_for("both worker threads to block on the account lock", lambda: lock_waiters() >= 2, 20)
        in_flight = {tx_id for tx_id, n in attempts(tx_ids).items() if n > 0}
        kill_group(first.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        first.wait(timeout=10)
        wait_for("the Dramatiq child to die", lambda: gone(children[0]), 10)
        transaction.rollback()
    finally:
        lock.close()

    # Both threads are blocked holding messages (lock_waiters above). A thread's own row
    # is counted (committed) before it claims; the rows a group takes along are counted
    # with the group's commit, and a thread whose row another group holds waits for that
    # row without counting. So at least the first thread's own row is counted in flight.
    assert in_flight, in_flight
    assert all(s == "pending" for s in wait_final(tx_ids, timeout=0).values())

    if lose_redis:
        flush_namespace()  # as if Redis restarted without persistence: every message is gone
    start_worker(procs)
    if scheduler:
        procs.start("scheduler", [LEDGERQ, "scheduler"], env={"SWEEPER_INTERVAL_SECONDS": "1"})
    wait_final(in_flight, timeout=45)
    recovered_after = time.monotonic() - killed_at  # the held messages are decided
    statuses = wait_final(tx_ids, timeout=45)
    print(
        f"SIGKILL -> held messages decided: {recovered_after:.1f} s, all: {time.monotonic() - killed_at:.1f} s"
    )
    return {
        "tx_ids": tx_ids,
        "in_flight": in_flight,
        "statuses": statuses,
        "source": source,
        "target": target,
        "recovered_after": recovered_after,
    }


def assert_applied_exactly_once(procs, outcome) -> None:
    statuses = outcome["statuses"]
    assert set(statuses.values()) <= {"completed", "failed"}, (statuses, procs.logs())
    completed = [tx_id for tx_id, status in statuses.items() if status == "completed"]
    failed = [tx_id for tx_id, status in statuses.items() if status == "failed"]
    # 100.00 covers 33 transfers of 3.00; the other 7 fail on funds, whatever the order.
    assert (len(completed), len(failed)) == (33, 7), statuses
    with unit_of_work() as uow:
        codes = set(
            uow.session.scalars(
                select(Transaction.failure_code).where(Transaction.id.in_([uuid.UUID(i) for i in failed]))
            )
        )
        problems = verify_ledger(uow.session)
    assert codes == {"insufficient_funds"}
    entries = entries_per_transaction([uuid.UUID(i) for i in outcome["tx_ids"]])
    # Whatever differs, say it with the rows' state, so a failure on CI can be read.
    assert entries == dict.fromkeys(completed, 2), (
        "a transfer was applied twice or half",
        {i: (statuses.get(i), n) for i, n in entries.items() if n != 2 or statuses.get(i) != "completed"},
        [i for i in completed if i not in entries],
        attempts(outcome["tx_ids"]),
        procs.logs(),
    )
    assert problems == []
    assert balance(outcome["source"]) == "1.00"
    assert balance(outcome["target"]) == "99.00"
    # The messages the dead worker held were delivered again (the first attempt was
    # counted before it blocked): recovery really happened, not a lucky ack.
    assert all(n >= 2 for tx_id, n in attempts(list(outcome["in_flight"])).items()), attempts(
        list(outcome["in_flight"])
    )


def test_sigkilled_worker_messages_come_back_from_the_broker(procs, client, make):
    """No scheduler: only Dramatiq's heartbeat + maintenance requeue can bring the held
    messages back, which proves BROKER_HEARTBEAT_TIMEOUT_MS/MAINTENANCE_CHANCE work."""
    outcome = kill_worker_holding_messages(procs, client, make, prefetch="2", scheduler=False)
    assert_applied_exactly_once(procs, outcome)
    # Heartbeat timeout is 3 s in the test settings; Dramatiq's defaults took minutes.
    assert outcome["recovered_after"] < 20, outcome["recovered_after"]


def test_sigkilled_worker_and_lost_messages_are_recovered_by_the_sweeper(procs, client, make):
    """The worker dies holding ten messages (deep prefetch) and Redis then loses every
    message: only the scheduler's sweeper, working from the `pending` rows, can finish."""
    outcome = kill_worker_holding_messages(
        procs, client, make, prefetch="10", scheduler=True, lose_redis=True
    )
    assert_applied_exactly_once(procs, outcome)
    assert "sweeper.reenqueued" in procs.logs_text("worker")


def test_sigkilled_worker_recovers_with_broker_and_sweeper_both_live(procs, client, make):
    """Production: the broker requeues the held messages while the sweeper re-enqueues
    the same rows. Duplicate deliveries must be no-ops: every transfer applied once."""
    outcome = kill_worker_holding_messages(procs, client, make, prefetch="10", scheduler=True)
    assert_applied_exactly_once(procs, outcome)
