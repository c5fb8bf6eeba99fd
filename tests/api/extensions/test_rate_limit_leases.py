"""Rate-limit leases on real Redis: a process takes 1 % of a large budget per round trip
and admits from it locally, yet never admits more than the limit, across processes and
threads, and never carries a lease into the next window."""

from __future__ import annotations

import time

import pytest

from api.extensions.rate_limit import EXTENSION_KEY, Budget
from tests.fixtures.http import app_with, assert_error, concurrently, transfer


def _counting_script_calls(app) -> list[list]:
    limiter = app.extensions[EXTENSION_KEY]
    calls: list[list] = []
    script = limiter.script

    def counted(*args, **kwargs):
        calls.append(kwargs["args"])
        return script(*args, **kwargs)

    limiter.script = counted
    return calls


def _me(client, user) -> int:
    return client.get("/api/v1/auth/me", headers=user.headers).status_code


def test_a_large_budget_costs_one_round_trip_per_lease_not_per_request(make):
    alice = make.user()
    app = app_with(rate_limit_default="100000 per minute")  # 1 % = 1,000: capped at 100
    calls = _counting_script_calls(app)
    client = app.test_client()
    assert [_me(client, alice) for _ in range(250)] == [200] * 250
    # 250 requests, leases of 100: three grants (plus a retry if the overrides mirror
    # had to be loaded first).
    assert 3 <= len(calls) <= 4, len(calls)


def test_leases_of_two_processes_admit_exactly_the_limit(make):
    """Two apps are two processes' limiters on one Redis. Asked in turn until both
    refuse, they admit exactly the limit: none over it (every admitted request was
    counted first) and none lost (every counted request was spent)."""
    alice = make.user()
    apps = [app_with(rate_limit_default="301 per minute") for _ in range(2)]  # leases of 3, then 1
    clients = [app.test_client() for app in apps]
    admitted, refused = 0, [False, False]
    while not all(refused):
        for i, client in enumerate(clients):
            if refused[i]:
                continue
            status = _me(client, alice)
            assert status in (200, 429)
            admitted += status == 200
            refused[i] = status == 429
        assert admitted <= 301
    assert admitted == 301
    assert [_me(client, alice) for client in clients] == [429, 429]


def test_concurrent_requests_of_one_process_admit_exactly_the_limit(make):
    alice = make.user()
    app = app_with(rate_limit_default="301 per minute")  # leases of 3, then 1

    def twenty(client, _):
        return [_me(client, alice) for _ in range(20)]

    statuses = [status for batch in concurrently(app, 20, twenty) for status in batch]
    assert statuses.count(200) == 301 and statuses.count(429) == 99


@pytest.mark.parametrize(
    "limit",
    ["1000 per 2 seconds", "1000 per 2 seconds;100000 per hour"],
    ids=["one window", "the shorter of two windows"],
)
def test_a_lease_ends_with_its_window(make, limit):
    alice = make.user()
    app = app_with(rate_limit_default=limit)  # leases of 10
    calls = _counting_script_calls(app)
    client = app.test_client()
    assert _me(client, alice) == 200
    before = len(calls)
    assert [_me(client, alice) for _ in range(5)] == [200] * 5
    assert len(calls) == before  # spent from the lease
    time.sleep(2.2)  # the 2-second window (and so the lease) has ended; 4 leased requests unspent
    assert _me(client, alice) == 200
    assert len(calls) == before + 1  # asked Redis again, counted in the new window


def test_a_refused_request_spends_nothing_of_its_leased_budgets(make):
    alice = make.user()
    a, b = make.account(alice, balance="100.00"), make.account(make.user())
    app = app_with(rate_limit_default="100000 per minute", rate_limit_money_per_user="3 per minute")
    leases = app.extensions[EXTENSION_KEY].leases
    requests = Budget("requests", f"user:{alice.id}", "", "")
    client = app.test_client()
    assert [transfer(client, alice, a, b).status_code for _ in range(3)] == [202] * 3
    left_before = leases.left(requests)
    assert left_before > 0
    for _ in range(5):
        assert_error(transfer(client, alice, a, b), 429, "rate_limited")
    assert leases.left(requests) == left_before
    assert _me(client, alice) == 200
    assert leases.left(requests) == left_before - 1


def test_concurrent_misses_refill_a_budget_once(make):
    """While one request asks Redis for a budget's lease, the others that find none ask
    for themselves alone: 20 concurrent first requests behind a slow Redis count one
    lease and 19 single requests, not 20 leases."""
    from workers import broker

    alice = make.user()
    app = app_with(rate_limit_default="100000 per minute")  # leases of 100
    limiter = app.extensions[EXTENSION_KEY]
    _me(app.test_client(), make.user())  # loads the overrides mirror: no reload below
    script = limiter.script

    def slow(*args, **kwargs):
        time.sleep(0.3)  # every other request misses while this one is in flight
        return script(*args, **kwargs)

    limiter.script = slow
    assert concurrently(app, 20, lambda client, _: _me(client, alice)) == [200] * 20
    counter = f"{limiter.prefix}requests:user:{alice.id}:60"
    assert int(broker.client.get(counter)) == 100 + 19


def test_lease_max_1_asks_redis_for_every_request(make):
    alice = make.user()
    app = app_with(rate_limit_default="100000 per minute", rate_limit_lease_max=1)
    calls = _counting_script_calls(app)
    client = app.test_client()
    _me(client, alice)  # may load the overrides mirror first
    calls.clear()
    assert [_me(client, alice) for _ in range(10)] == [200] * 10
    assert len(calls) == 10
