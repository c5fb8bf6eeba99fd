"""Long-polls (`GET /transactions/{id}?wait=N`): woken by the commit's NOTIFY, capped per
user, and parked at no thread's cost (a real gevent gunicorn serves others meanwhile)."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from db.core.config import get_settings
from db.ops.embedded import free_port
from db.ops.notifications import Listener
from db.transactions.finality import FinalityHub
from tests.fixtures.builders import pending_transfer
from tests.fixtures.http import app_with, assert_error
from tests.fixtures.ledger import apply_now
from tests.fixtures.processes import LEDGERQ, Http, Processes, wait_for

GUNICORN = str(Path(LEDGERQ).parent / "gunicorn")


def _waiting_polls(user_id) -> int:
    settings = get_settings()
    return redis.Redis.from_url(settings.redis_url).zcard(f"{settings.redis_namespace}:longpolls:{user_id}")


def test_the_commit_that_finalises_a_transaction_wakes_its_watchers(make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    watched, other = pending_transfer(alice, a, b, "1.00"), pending_transfer(alice, a, b, "2.00")
    listener = Listener(get_settings().database_url)
    hub = FinalityHub(listener)
    try:
        listener.start()
        assert listener.wait_listening(10)
        with hub.watch(uuid.UUID(watched)) as finalised, hub.watch(uuid.UUID(other)) as untouched:
            assert not finalised.is_set()
            assert apply_now(watched) == "completed"
            # Set by the NOTIFY of that commit, not by a re-read: nothing else sets it.
            assert finalised.wait(10)
            assert not untouched.is_set()
        assert hub.waiting() == 0
    finally:
        listener.stop()


def test_one_users_long_polls_above_the_cap_get_429_and_others_are_not_affected(make):
    app = app_with(long_poll_per_user=2)
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob, balance="10.00")
    tx_id = pending_transfer(alice, a, b, "1.00")
    results: list = []

    def poll():
        results.append(app.test_client().get(f"/api/v1/transactions/{tx_id}?wait=20", headers=alice.headers))

    pollers = [threading.Thread(target=poll) for _ in range(2)]
    for poller in pollers:
        poller.start()
    wait_for("two parked long-polls", lambda: _waiting_polls(alice.id) == 2, 10)

    over = app.test_client().get(f"/api/v1/transactions/{tx_id}?wait=20", headers=alice.headers)
    assert_error(over, 429, "rate_limited")
    assert int(over.headers["Retry-After"]) >= 1
    # Without ?wait, alice is served; bob's own long-poll is not capped by alice's.
    assert app.test_client().get(f"/api/v1/transactions/{tx_id}", headers=alice.headers).status_code == 200
    bobs = pending_transfer(bob, b, a, "1.00")
    assert (
        app.test_client().get(f"/api/v1/transactions/{bobs}?wait=0.2", headers=bob.headers).status_code == 200
    )

    assert apply_now(tx_id) == "completed"
    for poller in pollers:
        poller.join(timeout=20)
    assert [r.json["status"] for r in results] == ["completed", "completed"]
    assert _waiting_polls(alice.id) == 0  # slots given back
    again = app.test_client().get(f"/api/v1/transactions/{tx_id}?wait=20", headers=alice.headers)
    assert again.status_code == 200 and again.json["status"] == "completed"


@pytest.mark.slow
def test_parked_long_polls_hold_no_thread_other_requests_are_served(tmp_path, make):
    """One gevent worker process; more waiters than the old gthread pool had threads
    (2 x 8). While they park, other clients' reads are answered; a commit wakes them all."""
    waiters = 24
    processes = Processes(tmp_path)
    port = free_port()
    web = processes.start(
        "web",
        [GUNICORN, "--config", "python:api.gunicorn_conf", "api:create_app()"],
        env={
            "WEB_HOST": "127.0.0.1",
            "PORT": str(port),
            "WEB_WORKERS": "1",
            "LEDGERQ_LONG_POLLS_PER_USER": str(waiters),
            "LEDGERQ_RATE_LIMIT_DEFAULT": "10000 per minute",
        },
    )
    http = Http(f"http://127.0.0.1:{port}")
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob, balance="10.00")
    tx_id = pending_transfer(alice, a, b, "1.00")
    try:
        http.wait_ready(90, web)
        with ThreadPoolExecutor(waiters) as pool:
            parked = [
                pool.submit(http.get, f"/api/v1/transactions/{tx_id}?wait=30", alice.headers, 60)
                for _ in range(waiters)
            ]
            wait_for(f"{waiters} parked long-polls", lambda: _waiting_polls(alice.id) == waiters, 30)
            for _ in range(5):
                status, body = http.get(f"/api/v1/accounts/{b}", bob.headers, timeout=10)
                assert status == 200, body
            assert not any(f.done() for f in parked)  # still parked while others were served
            started = time.monotonic()
            assert apply_now(tx_id) == "completed"
            answers = [f.result(timeout=30) for f in parked]
        assert answers == [(200, answers[0][1])] * waiters and answers[0][1]["status"] == "completed"
        assert time.monotonic() - started < 10  # woken, not timed out at 30 s
    except BaseException:
        print(processes.logs())
        raise
    finally:
        processes.kill_all()
