"""The feed never skips: transactions take sequence numbers in one order and commit in
another, and every polling reader still sees every committed event exactly once; a
rolled-back change leaves no event."""

from __future__ import annotations

import random
import threading
import time
import uuid

import pytest

from db.core.principal import Principal
from db.events import feed, outbox
from db.session import session_factory, unit_of_work

FINANCE = Principal(id=uuid.uuid4(), role="finance")


def _event(n: int) -> outbox.NewEvent:
    return outbox.NewEvent("transaction.created", {"n": n})


def _read_all(cursor: str | None) -> tuple[list[int], str]:
    with unit_of_work() as uow:
        page = feed.read(uow.session, FINANCE, after=cursor, limit=50)
    return [e.data["n"] for e in page.items], page.next_cursor


def test_an_event_committed_later_with_an_earlier_number_is_not_skipped():
    """The 10-and-11 case: A takes the earlier sequence number and commits last."""
    factory = session_factory()
    a, b = factory(), factory()
    try:
        outbox.record(a, [_event(1)])  # A inserts first (lower seq) and stays open
        a.flush()
        outbox.record(b, [_event(2)])
        b.commit()  # B commits first

        seen, cursor = _read_all(None)
        assert seen == []  # B is not shown while an older transaction is still running
        a.commit()
        seen, cursor = _read_all(cursor)
        assert seen == [1, 2]
        assert _read_all(cursor) == ([], cursor)  # the cursor is returned even with no items
    finally:
        a.close()
        b.close()


def test_a_rolled_back_change_leaves_no_event():
    factory = session_factory()
    with factory() as session:
        outbox.record(session, [_event(1)])
        session.rollback()
    with unit_of_work() as uow:
        outbox.record(uow.session, [_event(2)])
    assert _read_all(None)[0] == [2]


@pytest.mark.slow
def test_many_concurrent_writers_and_polling_readers_each_see_every_event_exactly_once():
    writers, per_writer, readers = 8, 25, 4
    done = threading.Event()
    committed: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def write(w: int) -> None:
        rng = random.Random(w)
        try:
            for i in range(per_writer):
                n = w * 1000 + i
                rolled_back = rng.random() < 0.1
                with session_factory()() as session:
                    outbox.record(session, [_event(n)])
                    session.flush()
                    time.sleep(rng.random() * 0.02)  # hold the sequence number, commit later
                    if rolled_back:
                        session.rollback()
                        continue
                    session.commit()
                with lock:
                    committed.append(n)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    seen: list[list[int]] = [[] for _ in range(readers)]

    def read(r: int) -> None:
        cursor = None
        try:
            while True:
                finished = done.is_set()
                items, cursor = _read_all(cursor)
                seen[r] += items
                if finished and not items:
                    return
                time.sleep(0.005)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(r,)) for r in range(readers)]
    threads += [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads[readers:]:
        thread.join(timeout=120)
    done.set()
    for thread in threads[:readers]:
        thread.join(timeout=120)

    assert errors == []
    assert len(committed) > writers * per_writer // 2
    for r in range(readers):
        assert len(seen[r]) == len(set(seen[r])), f"reader {r} saw an event twice"
        assert sorted(seen[r]) == sorted(committed), f"reader {r} missed events"
