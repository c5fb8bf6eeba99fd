"""Concurrent submissions through the API and the real worker cannot jointly exceed a
limit: the worker sums what the account sent while holding its row lock."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from tests.fixtures.broker import resend
from tests.fixtures.http import accepted, error_code, set_limits, transfer
from tests.fixtures.ledger import balance, transaction, wait_final

N = 30


def _submit_concurrently(app, user, source, target, amount, n=N):
    barrier = threading.Barrier(n)

    def submit(_):
        client = app.test_client()
        barrier.wait()
        return transfer(client, user, source, target, amount)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(submit, range(n)))


def _outcomes(responses):
    ids = [r.json["id"] for r in responses if r.status_code == 202]
    refused = [r for r in responses if r.status_code != 202]
    assert all(r.status_code == 422 and error_code(r) == "limit_exceeded" for r in refused), [
        r.json for r in refused
    ]
    statuses = wait_final(ids, timeout=60)
    completed = [i for i, s in statuses.items() if s == "completed"]
    failed = [i for i, s in statuses.items() if s == "failed"]
    assert len(completed) + len(failed) == len(ids), statuses
    assert {transaction(i).failure_code for i in failed} <= {"limit_exceeded"}
    return completed, failed, refused


def test_concurrent_requests_cannot_jointly_exceed_the_daily_limit(app, client, make, worker):
    finance, alice = make.user("finance"), make.user()
    source, target = make.account(alice, balance="1000.00"), make.account(make.user())
    set_limits(client, finance, source, daily_outgoing_limit="100.00")

    completed, failed, refused = _outcomes(_submit_concurrently(app, alice, source, target, "10.00"))

    # Every refusal (at request time or in the worker) happened with 100.00 committed or
    # promised, so exactly the limit went out: never more, and nothing lost.
    assert len(completed) == 10
    assert len(failed) + len(refused) == N - 10
    assert balance(source) == "900.00"
    assert balance(target) == "100.00"


def test_concurrent_requests_cannot_jointly_exceed_the_per_minute_count(app, client, make, worker):
    finance, alice = make.user("finance"), make.user()
    source, target = make.account(alice, balance="1000.00"), make.account(make.user())
    set_limits(client, finance, source, per_minute_outgoing_count=7)

    completed, _, _ = _outcomes(_submit_concurrently(app, alice, source, target, "1.00"))

    assert len(completed) == 7
    assert balance(source) == "993.00"


def test_the_worker_alone_holds_the_daily_limit_when_requests_got_past_the_api(app, client, make, request):
    """Twenty transfers accepted before a limit existed, then applied by four worker
    threads at once: the row lock is all that stands between them and the limit."""
    finance, alice = make.user("finance"), make.user()
    source, target = make.account(alice, balance="1000.00"), make.account(make.user())
    ids = [accepted(transfer(client, alice, source, target, "10.00")) for _ in range(20)]
    set_limits(client, finance, source, daily_outgoing_limit="100.00")

    request.getfixturevalue("worker")
    resend(ids)
    statuses = wait_final(ids, timeout=60)

    assert sorted(statuses.values()) == ["completed"] * 10 + ["failed"] * 10
    failed = [i for i, s in statuses.items() if s == "failed"]
    assert {transaction(i).failure_code for i in failed} == {"limit_exceeded"}
    assert balance(source) == "900.00"
    assert balance(target) == "100.00"
