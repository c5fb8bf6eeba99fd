"""The batch inbox: files become batches of the configured finance user, then move to
processed/ or rejected/ (with a reason) — never dropped, never ingested twice."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import func, select

from db.core.config import get_settings
from db.models import Batch
from db.session import unit_of_work
from scheduler.inbox import scan_inbox
from tests.fixtures.batches import csv_bytes, wait_batch
from tests.fixtures.ledger import balance


@pytest.fixture
def inbox(tmp_path, make):
    finance = make.user("finance")
    settings = get_settings().model_copy(
        update={
            "batch_inbox_dir": str(tmp_path),
            "batch_inbox_user": finance.username,
            "batch_inbox_settle_s": 0,
        }
    )
    return tmp_path, settings, finance


def batches() -> list[Batch]:
    with unit_of_work() as uow:
        rows = list(uow.session.scalars(select(Batch).order_by(Batch.seq)))
        for row in rows:
            uow.session.expunge(row)
        return rows


def test_files_are_ingested_and_moved_never_twice(inbox, make, client, worker):
    directory, settings, finance = inbox
    alice, bob = make.user(), make.user()
    a = make.account(alice, balance="20.00")
    b = make.account(bob)
    good = csv_bytes(f"{a},{b},5.00,USD,in-1", f"{a},{b},bad,USD,in-2")
    (directory / "payroll.csv").write_bytes(good)
    (directory / "wrong-header.csv").write_bytes(b"who,what\nx,y\n")
    (directory / "upload.csv.part").write_bytes(good)  # still being written
    (directory / ".hidden.csv").write_bytes(good)

    assert scan_inbox(settings) == 2
    assert sorted(p.name for p in (directory / "processed").iterdir()) == [
        "payroll.csv",
        "payroll.csv.batch.txt",
    ]
    assert sorted(p.name for p in (directory / "rejected").iterdir()) == [
        "wrong-header.csv",
        "wrong-header.csv.error.txt",
    ]
    assert "wrong column set" in (directory / "rejected" / "wrong-header.csv.error.txt").read_text()
    assert (directory / "upload.csv.part").exists() and (directory / ".hidden.csv").exists()
    assert list((directory / "processing").iterdir()) == []

    [batch] = batches()
    assert batch.source == "inbox" and batch.filename == "payroll.csv"
    assert batch.created_by == finance.id
    assert str(batch.id) in (directory / "processed" / "payroll.csv.batch.txt").read_text()
    done = wait_batch(client, finance, batch.id)
    assert done["counts"]["completed"] == 1 and done["counts"]["rejected"] == 1
    assert balance(b) == "5.00"

    # The same content dropped again is a duplicate: rejected with the first batch's id.
    (directory / "payroll-again.csv").write_bytes(good)
    assert scan_inbox(settings) == 1
    reason = (directory / "rejected" / "payroll-again.csv.error.txt").read_text()
    assert "conflict" in reason and str(batch.id) in reason
    assert scan_inbox(settings) == 0
    assert len(batches()) == 1
    assert balance(b) == "5.00"


def test_atomic_suffix_and_name_collisions(inbox, make):
    directory, settings, finance = inbox
    alice = make.user()
    a = make.account(alice)
    (directory / "run.atomic.csv").write_bytes(csv_bytes(f",{a},1.00,USD,x-1"))
    scan_inbox(settings)
    (directory / "run.atomic.csv").write_bytes(csv_bytes(f",{a},2.00,USD,x-2"))
    scan_inbox(settings)
    assert [b.mode for b in batches()] == ["atomic", "atomic"]
    names = sorted(p.name for p in (directory / "processed").iterdir() if not p.name.endswith(".txt"))
    assert names == ["run.atomic.csv", "run.atomic.csv.1"]


def test_a_file_left_in_processing_by_a_crash_is_finished_once(inbox, make):
    directory, settings, finance = inbox
    alice = make.user()
    a = make.account(alice)
    content = csv_bytes(f",{a},1.00,USD,crash-1")
    (directory / "processing").mkdir()
    # Crash after the claim, before anything was recorded: it is ingested now.
    (directory / "processing" / "claimed.csv").write_bytes(content)
    assert scan_inbox(settings) == 1
    assert len(batches()) == 1
    # Crash after the batch was committed, before the move: it is only moved.
    os.rename(directory / "processed" / "claimed.csv", directory / "processing" / "claimed.csv")
    assert scan_inbox(settings) == 1
    assert len(batches()) == 1
    assert (directory / "processed" / "claimed.csv").exists()


def test_files_wait_while_they_are_still_being_written_or_the_user_is_missing(inbox, make):
    directory, settings, finance = inbox
    alice = make.user()
    a = make.account(alice)
    (directory / "fresh.csv").write_bytes(csv_bytes(f",{a},1.00,USD,f-1"))
    assert scan_inbox(settings.model_copy(update={"batch_inbox_settle_s": 60})) == 0
    assert (directory / "fresh.csv").exists()
    customer = make.user()
    assert scan_inbox(settings.model_copy(update={"batch_inbox_user": customer.username})) == 0
    assert scan_inbox(settings.model_copy(update={"batch_inbox_user": "nobody"})) == 0
    assert (directory / "fresh.csv").exists()  # left for later, not dropped
    time.sleep(0.01)
    assert scan_inbox(settings) == 1
    with unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Batch)) == 1


def test_an_inbox_file_over_the_limit_is_rejected_with_the_reason(inbox, make):
    directory, settings, finance = inbox
    alice = make.user()
    a = make.account(alice)
    (directory / "big.csv").write_bytes(csv_bytes(*[f",{a},1.00,USD,b-{n}" for n in range(10)]))
    assert scan_inbox(settings.model_copy(update={"batch_max_lines": 5})) == 1
    assert "limit of 5 lines" in (directory / "rejected" / "big.csv.error.txt").read_text()
    assert batches() == []


def test_scheduler_runs_the_batch_ticks_and_the_inbox_only_when_configured(tmp_path):
    from scheduler.main import build_scheduler

    plain = {job.id for job in build_scheduler(get_settings()).get_jobs()}
    assert {"release_batches", "sweep_batches"} <= plain
    assert "batch_inbox" not in plain
    with_inbox = get_settings().model_copy(update={"batch_inbox_dir": str(tmp_path)})
    assert "batch_inbox" in {job.id for job in build_scheduler(with_inbox).get_jobs()}


def test_a_symlink_is_never_followed_and_goes_to_rejected(inbox, tmp_path_factory):
    """A link to /etc/passwd was read, and its first line echoed into the error file."""
    directory, settings, _ = inbox
    secret = tmp_path_factory.mktemp("outside") / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (directory / "payroll.csv").symlink_to(secret)
    (directory / "processing").mkdir()
    (directory / "processing" / "left.csv").symlink_to(secret)  # as if claimed before a crash

    assert scan_inbox(settings) == 2
    rejected = directory / "rejected"
    assert sorted(p.name for p in rejected.iterdir()) == [
        "left.csv",
        "left.csv.error.txt",
        "payroll.csv",
        "payroll.csv.error.txt",
    ]
    assert (rejected / "payroll.csv").is_symlink(), "the link itself moved; its target untouched"
    for note in ("payroll.csv.error.txt", "left.csv.error.txt"):
        text = (rejected / note).read_text()
        assert "symbolic link" in text and "root" not in text
    assert secret.read_text().startswith("root:")
    assert batches() == []


def test_the_error_file_never_echoes_the_files_content(inbox):
    directory, settings, _ = inbox
    (directory / "notes.csv").write_bytes(b"root:x:0:0:root:/root:/bin/bash\nsecond line\n")
    (directory / "dup.csv").write_bytes(b"amount,amount,private-column-name\n1,2,3\n")

    assert scan_inbox(settings) == 2
    for name in ("notes.csv", "dup.csv"):
        text = (directory / "rejected" / f"{name}.error.txt").read_text()
        assert "wrong column set" in text or "header" in text, text
        for content in ("root", "/bin/bash", "private-column-name"):
            assert content not in text, text


def test_a_file_with_nul_bytes_goes_to_rejected_not_stuck_in_processing(inbox, make):
    directory, settings, _ = inbox
    a, b = make.account(make.user(), balance="10.00"), make.account(make.user())
    (directory / "nul.csv").write_bytes(csv_bytes(f"{a},{b},1.00,USD,ref\x00erence"))

    assert scan_inbox(settings) == 1
    assert list((directory / "processing").iterdir()) == []
    text = (directory / "rejected" / "nul.csv.error.txt").read_text()
    assert "NUL" in text and "erence" not in text
    assert batches() == []


def test_recovery_matches_only_a_live_batch_created_after_the_claim(inbox, make):
    from tests.fixtures.ledger import sql

    directory, settings, finance = inbox
    a = make.account(make.user())
    content = csv_bytes(f",{a},1.00,USD,again-1")
    (directory / "pay.csv").write_bytes(content)
    assert scan_inbox(settings) == 1
    [first] = batches()
    sql("UPDATE batches SET status = 'cancelled' WHERE id = :id", id=str(first.id))

    # The same file dropped again, claimed, then the scheduler crashed before recording it.
    time.sleep(0.05)
    (directory / "processing" / "pay.csv").write_bytes(content)
    assert scan_inbox(settings) == 1
    assert len(batches()) == 2  # a new batch: the cancelled one moved no money
    second = batches()[1]
    assert str(second.id) in (directory / "processed" / "pay.csv.1.batch.txt").read_text()

    # A live batch from before the claim is a duplicate, not "this file, already done".
    time.sleep(0.05)
    (directory / "processing" / "pay.csv").write_bytes(content)
    assert scan_inbox(settings) == 1
    assert len(batches()) == 2
    reason = (directory / "rejected" / "pay.csv.error.txt").read_text()
    assert "conflict" in reason and str(second.id) in reason
