"""The chunk actor: redelivery, concurrency with single operations, lost messages,
dead letters, and the single-transfer sweeper leaving batch lines alone."""

from __future__ import annotations

import uuid

from sqlalchemy import text, update

from db.batches import posting as batch_posting
from db.models import Batch
from db.session import unit_of_work
from db.transactions import repository as transactions_repo
from tests.fixtures.batches import assert_counts_add_up, batch_row, csv_bytes, upload, wait_batch
from tests.fixtures.ledger import balance, entry_count
from workers import batches as batch_actors


def submitted(client, make, lines: int = 5, **form):
    """A batch recorded by the API with no worker running: its chunk message waits in Redis."""
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a = make.account(alice, balance="100.00")
    b = make.account(bob)
    content = csv_bytes(*[f"{a},{b},1.00,USD,c-{n}" for n in range(lines)])
    batch = upload(client, finance, content, **form).json
    return finance, a, b, batch


def test_redelivered_chunk_message_does_not_apply_twice(client, make):
    finance, a, b, batch = submitted(client, make)
    assert batch["status"] == "processing"
    before = entry_count()
    batch_actors.apply_chunk(batch["id"], 0)  # first delivery
    assert balance(a) == "95.00" and balance(b) == "5.00"
    assert entry_count() == before + 10
    batch_actors.apply_chunk(batch["id"], 0)  # the same message again
    assert balance(a) == "95.00" and balance(b) == "5.00"
    assert entry_count() == before + 10
    row = batch_row(batch["id"])
    assert row.status == "completed"
    assert row.completed_count == 5

    # Even with the batch's cursor wound back (as if the first delivery's bookkeeping
    # were lost), every line is locked, found no longer pending, and skipped.
    with unit_of_work() as uow:
        uow.session.execute(
            update(Batch).where(Batch.id == uuid.UUID(batch["id"])).values(status="processing", next_line=0)
        )
    with unit_of_work() as uow:
        outcome = batch_posting.apply_chunk(uow.session, uuid.UUID(batch["id"]), 0, chunk_size=100)
    assert (outcome.completed, outcome.failed, outcome.skipped) == (0, 0, 5)
    assert balance(a) == "95.00" and entry_count() == before + 10


def test_redelivery_through_the_real_broker_applies_once(client, make, worker):
    finance, a, b, batch = submitted(client, make)
    for _ in range(3):  # the API's message plus two duplicates
        batch_actors.apply_chunk.send(batch_id=batch["id"], start_line=0)
    done = wait_batch(client, finance, batch["id"])
    assert done["status"] == "completed"
    assert balance(a) == "95.00" and balance(b) == "5.00"
    assert_counts_add_up(done)


def test_chunks_follow_each_other_in_file_order(client, make, worker):
    """Line 2 funds bob; later chunks spend it: deciding in file order makes them pass."""
    finance, alice, bob, carol = make.user("finance"), make.user(), make.user(), make.user()
    a = make.account(alice, balance="10.00")
    b, c = make.account(bob), make.account(carol)
    lines = [f"{a},{b},10.00,USD,fund"] + [f"{b},{c},1.00,USD,spend-{n}" for n in range(10)]
    from api import create_app
    from db.core.config import get_settings

    app = create_app(get_settings().model_copy(update={"batch_chunk_size": 3}))
    batch = upload(app.test_client(), finance, csv_bytes(*lines)).json
    done = wait_batch(client, finance, batch["id"])
    assert done["status"] == "completed", done
    assert balance(c) == "10.00" and balance(b) == "0.00"


def test_a_lost_chunk_message_is_resent_by_the_batch_sweeper(client, make):
    finance, a, b, batch = submitted(client, make)
    from tests.fixtures.broker import flush_namespace

    flush_namespace()  # Redis lost the message
    with unit_of_work() as uow:
        uow.session.execute(
            text("UPDATE batches SET updated_at = now() - interval '1 hour' WHERE id = :id"),
            {"id": batch["id"]},
        )
    assert batch_actors.resend_stalled() == 1
    assert batch_actors.resend_stalled() == 0  # touched: not re-sent every tick
    from dramatiq import Worker

    from workers import broker

    worker = Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        done = wait_batch(client, finance, batch["id"])
    finally:
        worker.stop(timeout=10_000)
    assert done["status"] == "completed"
    assert balance(b) == "5.00"


def test_single_transfer_sweeper_and_release_leave_batch_lines_alone(client, make):
    finance, a, b, batch = submitted(client, make)
    with unit_of_work() as uow:
        uow.session.execute(
            text("UPDATE transactions SET updated_at = now() - interval '1 hour' WHERE batch_id = :id"),
            {"id": batch["id"]},
        )
        stale = transactions_repo.claim_stale_pending(
            uow.session, stale_after_s=1, min_backoff_s=0.05, max_backoff_s=0.2, limit=100
        )
    assert stale == []


def test_dead_lettered_chunk_marks_its_lines_and_ends_the_batch(client, make):
    finance, a, b, batch = submitted(client, make, lines=4)
    batch_actors.record_chunk_dead_letter(
        {"batch_id": batch["id"], "start_line": 0}, "OperationalError: down"
    )
    row = batch_row(batch["id"])
    assert row.status == "failed"
    assert row.failure_code == "dead_lettered"
    assert row.dead_lettered_count == 4 and row.pending_count == 0
    assert row.total_items == 4
    assert balance(a) == "100.00"
    batch_actors.apply_chunk(batch["id"], 0)  # a late delivery changes nothing
    assert balance(a) == "100.00"


def test_counts_follow_a_single_cancel_of_a_batch_line(client, make):
    """The counters are kept by the database, whichever code path changes a line."""
    finance, a, b, batch = submitted(client, make, lines=2)
    with unit_of_work() as uow:
        uow.session.execute(
            text("UPDATE transactions SET status = 'cancelled' WHERE batch_id = :id AND batch_line = 2"),
            {"id": batch["id"]},
        )
    body = client.get(f"/api/v1/batches/{batch['id']}", headers=finance.headers).json
    assert body["counts"]["cancelled"] == 1 and body["counts"]["pending"] == 1
    assert_counts_add_up(body)


def test_an_ingest_in_progress_does_not_block_transfers_on_its_accounts(make):
    """An ingest holds KEY SHARE on every account its uncommitted lines reference (the
    FK check) for as long as it runs; appliers lock with FOR NO KEY UPDATE, which does
    not wait for it."""
    from db.core.config import get_settings
    from db.ledger import repository as ledger_repo
    from db.ledger.posting import apply_transaction
    from db.session import session_factory
    from db.transactions.service import MoneyMovement, submit

    finance, alice = make.user("finance"), make.user()
    a = make.account(alice, balance="5.00")
    with session_factory()() as ingest:
        ingest.execute(text("SELECT 1 FROM accounts WHERE id = :id FOR KEY SHARE"), {"id": str(a)})
        with unit_of_work() as uow:
            uow.session.execute(text("SET LOCAL lock_timeout = '1s'"))
            tx = submit(
                uow.session,
                finance.principal,
                MoneyMovement(type="debit", amount="1.00", currency="USD", account_id=a),
                idempotency_key=None,
                settings=get_settings(),
            ).record
            assert apply_transaction(uow.session, tx.id).status == "completed"
            assert a in ledger_repo.lock_accounts(uow.session, [a])
        ingest.rollback()
    assert balance(a) == "4.00"


def test_a_cancelled_upload_whose_message_was_lost_still_gets_its_report(make):
    from api import create_app
    from db.core.config import get_settings
    from tests.fixtures.broker import flush_namespace

    client = create_app(get_settings().model_copy(update={"batch_sync_ingest_max_lines": 1})).test_client()
    finance, alice = make.user("finance"), make.user()
    a = make.account(alice)
    batch = upload(client, finance, csv_bytes(f",{a},1.00,USD,l-1", f",{a},2.00,USD,l-2")).json
    assert batch["status"] == "received"
    flush_namespace()  # the ingest message is lost
    assert client.post(f"/api/v1/batches/{batch['id']}/cancel", headers=finance.headers).status_code == 200
    with unit_of_work() as uow:
        uow.session.execute(
            text("UPDATE batches SET updated_at = now() - interval '1 hour' WHERE id = :id"),
            {"id": batch["id"]},
        )
    assert batch_actors.resend_stalled() == 1
    batch_actors.ingest(batch["id"])  # what the re-sent message does
    row = batch_row(batch["id"])
    assert (row.status, row.total_items, row.cancelled_count) == ("cancelled", 2, 2)
    assert batch_actors.resend_stalled() == 0
    assert balance(a) == "0.00"


def test_a_retry_after_partial_progress_continues_from_the_batchs_cursor(client, make, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from db.core.config import get_settings

    finance, a, b, batch = submitted(client, make, lines=5)
    settings = get_settings().model_copy(update={"batch_chunk_size": 4, "batch_message_budget_s": 60})
    monkeypatch.setattr(batch_actors, "get_settings", lambda: settings)
    real, calls = batch_posting.apply_chunk, []

    def second_chunk_fails(session, batch_id, line, **kw):
        calls.append(line)
        if len(calls) == 2:
            raise OperationalError("apply", {}, Exception("server closed the connection"))
        return real(session, batch_id, line, **kw)

    monkeypatch.setattr(batch_posting, "apply_chunk", second_chunk_fails)
    try:
        batch_actors.apply_chunk(batch["id"], 0)  # chunk 1 (lines 2-3) committed, chunk 2 fails
    except OperationalError:
        pass
    assert batch_row(batch["id"]).next_line > 0 and balance(b) == "2.00"

    batch_actors.apply_chunk(batch["id"], 0)  # Retries re-sends the same message
    row = batch_row(batch["id"])
    assert row.status == "completed" and row.completed_count == 5, (row.status, row.next_line)
    assert balance(b) == "5.00"


def test_the_batch_sweeper_waits_out_a_failed_chunks_retry_backoff(client, make, monkeypatch):
    """Issue 11 item 23 (confirmed): a chunk that failed is retried by Dramatiq after a
    backoff (up to 10 minutes); the sweeper re-sent it after 60 s of quiet regardless,
    starting a second retry chain beside the first. It now waits out the backoff the
    batch's failed attempts imply, and the count starts over when the cursor moves."""
    from sqlalchemy.exc import OperationalError

    from db.core.config import get_settings

    finance, a, b, batch = submitted(client, make, lines=3)
    # Production backoff (1 s doubling, 10 min cap), whatever the test settings say.
    settings = get_settings().model_copy(
        update={"worker_min_backoff_ms": 1000, "worker_max_backoff_ms": 600_000}
    )
    monkeypatch.setattr(batch_actors, "get_settings", lambda: settings)

    def fails(*args, **kwargs):
        raise OperationalError("apply", {}, Exception("server closed the connection"))

    with monkeypatch.context() as patch:
        patch.setattr(batch_posting, "apply_chunk", fails)
        for _ in range(6):  # six failed attempts: Dramatiq's next wait is up to 64 s
            try:
                batch_actors.apply_chunk(batch["id"], 0)
            except OperationalError:
                pass
    assert batch_row(batch["id"]).chunk_failures == 6

    def quiet_for(seconds: int) -> None:
        with unit_of_work() as uow:
            uow.session.execute(
                text("UPDATE batches SET updated_at = now() - make_interval(secs => :s) WHERE id = :id"),
                {"id": batch["id"], "s": seconds},
            )

    quiet_for(settings.batch_stale_after_s + 30)  # past the stale time, inside the backoff
    assert batch_actors.resend_stalled() == 0
    quiet_for(settings.batch_stale_after_s + 64 + 5)  # the retry is overdue: the message was lost
    assert batch_actors.resend_stalled() == 1

    batch_actors.apply_chunk(batch["id"], 0)  # the retry succeeds
    row = batch_row(batch["id"])
    assert row.status == "completed" and row.chunk_failures == 0


def test_a_chunk_redelivered_while_its_first_worker_is_frozen_is_harmless_and_recovered(
    client, make, monkeypatch
):
    """Issue 11 item 23 (not a bug, pinned): the heartbeat (30 s) is below the batch
    actors' time limit (30 min), yet a live worker keeps heartbeating from its consumer
    thread however long an actor runs, so only a frozen (SIGSTOP) or dead worker's chunk
    message is requeued to another. That second delivery steps aside (`busy`: the batch's
    advisory lock) while the first still holds its chunk, applies nothing twice when the
    first resumes, and a first delivery that dies instead leaves the batch to the stalled
    sweeper, which finishes it exactly once."""
    import threading

    from db.ledger.posting import engine

    finance, a, b, batch = submitted(client, make, lines=3)
    real_post, frozen, resume = engine.post, threading.Event(), threading.Event()
    outcome: dict = {}

    def post_then_freeze(*args, **kwargs):
        decided = real_post(*args, **kwargs)
        if threading.current_thread().name == "first-worker":
            frozen.set()
            resume.wait(30)  # SIGSTOPped mid-chunk: its transaction and locks stay open
            if outcome.get("die"):
                raise OperationalError("apply", {}, Exception("the worker was killed"))
        return decided

    from sqlalchemy.exc import OperationalError

    monkeypatch.setattr(engine, "post", post_then_freeze)

    def first_delivery():
        try:
            with unit_of_work() as uow:
                outcome["first"] = batch_posting.apply_chunk(
                    uow.session, uuid.UUID(batch["id"]), 0, chunk_size=10
                )
        except OperationalError:
            outcome["first"] = "died"

    for die in (False, True):
        outcome.clear()
        outcome["die"] = die
        frozen.clear()
        resume.clear()
        if die:  # a second batch, its first worker killed mid-chunk
            finance, a, b, batch = submitted(client, make, lines=3)
        first = threading.Thread(target=first_delivery, name="first-worker")
        first.start()
        assert frozen.wait(30)
        # The requeued message, on a second worker: it steps aside at once.
        with unit_of_work() as uow:
            second = batch_posting.apply_chunk(uow.session, uuid.UUID(batch["id"]), 0, chunk_size=10)
        assert second.status == "busy" and balance(b) == "0.00"  # it moved nothing
        resume.set()
        first.join(30)
        if not die:
            assert outcome["first"].status == "applied"
        else:
            assert outcome["first"] == "died" and batch_row(batch["id"]).status == "processing"
            with unit_of_work() as uow:  # quiet past the stale time: the sweeper re-sends it
                uow.session.execute(
                    text("UPDATE batches SET updated_at = now() - interval '1 hour' WHERE id = :id"),
                    {"id": batch["id"]},
                )
            assert batch_actors.resend_stalled() == 1
            batch_actors.apply_chunk(batch["id"], 0)  # what the re-sent message does
        row = batch_row(batch["id"])
        assert row.status == "completed" and row.completed_count == 3
        assert balance(b) == "3.00"
