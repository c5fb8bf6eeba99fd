"""Rate limits on real Redis: 429 `rate_limited` with Retry-After, then recovery once the
window has passed. Each test builds an app with tight limits and short windows."""

from __future__ import annotations

import time

from db.core.config import get_settings
from tests.fixtures.http import app_with, bearer, transfer

GENEROUS = "100000 per minute"
TIGHT = "3 per 2 seconds"
# For tests that need no recovery: a window no slow machine runs out of mid-test.
PER_MINUTE = "3 per minute"


def _login(client, username: str, password: str = "wrong password!!", ip: str = "10.0.0.1", field="username"):
    return client.post(
        "/api/v1/auth/login",
        json={field: username, "password": password},
        environ_base={"REMOTE_ADDR": ip},
    )


def _assert_rate_limited(response):
    assert response.status_code == 429, response.json
    assert response.json["error"]["code"] == "rate_limited"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 2
    return retry_after


def _assert_refused(response):
    assert response.status_code == 429, response.json
    assert response.json["error"]["code"] == "rate_limited" and int(response.headers["Retry-After"]) >= 1


def _until_allowed(request, deadline_s: float = 4.0):
    deadline = time.monotonic() + deadline_s
    while True:
        response = request()
        if response.status_code != 429 or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_login_failures_are_limited_per_account_then_recover(make):
    alice, bob = make.user(), make.user()
    client = app_with(rate_limit_auth_per_login=TIGHT, rate_limit_auth_per_ip=GENEROUS).test_client()

    for _ in range(3):
        assert _login(client, alice.username).status_code == 401
    _assert_rate_limited(_login(client, alice.username))
    # From the guessing address even the right password waits: else a guess that hits
    # would still tell the attacker so.
    _assert_rate_limited(_login(client, alice.username, alice.password))
    # Another account from the same address is not affected by alice's bucket.
    assert _login(client, bob.username, bob.password).status_code == 200

    recovered = _until_allowed(lambda: _login(client, alice.username, alice.password))
    assert recovered.status_code == 200


def test_username_and_email_are_one_account_not_two_budgets(make):
    """The limit keyed on the field sent, so username and email gave twice the guesses."""
    alice = make.user()
    client = app_with(rate_limit_auth_per_login=PER_MINUTE, rate_limit_auth_per_ip=GENEROUS).test_client()
    assert _login(client, alice.username).status_code == 401
    assert _login(client, f"{alice.username}@example.com", field="email").status_code == 401
    assert _login(client, alice.username.upper()).status_code == 401
    _assert_refused(_login(client, f"{alice.username}@example.com", field="email"))


def test_successful_logins_do_not_use_up_the_budget(make):
    alice = make.user()
    client = app_with(rate_limit_auth_per_login=PER_MINUTE, rate_limit_auth_per_ip=GENEROUS).test_client()
    for _ in range(6):
        assert _login(client, alice.username, alice.password).status_code == 200


def test_an_attacker_exhausting_the_budget_does_not_lock_the_owner_out(make):
    """Failures count per account and address: the owner, elsewhere, still logs in.
    A cap per account over every address (LEDGERQ_RATE_LIMIT_AUTH_FAILURES_PER_ACCOUNT)
    still bounds a distributed guesser."""
    alice = make.user()
    client = app_with(
        rate_limit_auth_per_login=PER_MINUTE,
        rate_limit_auth_per_ip=GENEROUS,
        rate_limit_auth_failures_per_account="5 per minute",
    ).test_client()
    for _ in range(3):
        assert _login(client, alice.username, ip="203.0.113.9").status_code == 401
    _assert_refused(_login(client, alice.username, ip="203.0.113.9"))
    assert _login(client, alice.username, alice.password, ip="198.51.100.1").status_code == 200

    for ip in ("203.0.113.10", "203.0.113.11"):
        assert _login(client, alice.username, ip=ip).status_code == 401
    _assert_refused(_login(client, alice.username, ip="203.0.113.12"))  # 5 failures in all


def test_login_is_limited_per_ip_across_usernames(make):
    client = app_with(rate_limit_auth_per_ip=TIGHT, rate_limit_auth_per_login=GENEROUS).test_client()
    for name in ("a1-user", "a2-user", "a3-user"):
        assert _login(client, name, ip="10.0.0.7").status_code == 401
    _assert_rate_limited(_login(client, "a4-user", ip="10.0.0.7"))
    assert _login(client, "a4-user", ip="10.0.0.8").status_code == 401  # another address


def test_register_refresh_and_logout_share_the_per_ip_auth_budget(make):
    client = app_with(rate_limit_auth_per_ip=TIGHT).test_client()

    def register(i):
        body = {"username": f"reg-{i}", "email": f"reg-{i}@example.com", "password": "long enough password"}
        return client.post("/api/v1/auth/register", json=body)

    assert register(1).status_code == 201
    assert register(2).status_code == 201
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": "forged"}).status_code == 401
    _assert_rate_limited(register(3))
    _assert_rate_limited(client.post("/api/v1/auth/refresh", json={"refresh_token": "forged"}))
    _assert_rate_limited(client.post("/api/v1/auth/logout", json={"refresh_token": "forged"}))


def test_money_moving_posts_are_limited_per_user(make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob, balance="100.00")
    client = app_with(rate_limit_money_per_user=TIGHT).test_client()

    for _ in range(3):
        assert transfer(client, alice, a, b).status_code == 202
    _assert_rate_limited(transfer(client, alice, a, b))
    # One budget for every money-moving POST: switching to debit does not help.
    debit = {"account_id": str(a), "amount": "1.00", "currency": "USD"}
    _assert_rate_limited(client.post("/api/v1/transactions/debit", json=debit, headers=alice.headers))
    assert transfer(client, bob, b, a).status_code == 202  # bob has a budget of his own
    # Reads are not money movement.
    assert client.get(f"/api/v1/accounts/{a}", headers=alice.headers).status_code == 200


def test_every_api_request_counts_against_a_default_budget(make):
    alice = make.user()
    client = app_with(rate_limit_default=TIGHT).test_client()
    for _ in range(3):
        assert client.get("/api/v1/auth/me", headers=alice.headers).status_code == 200
    _assert_rate_limited(client.get("/api/v1/accounts", headers=alice.headers))
    # Probes, metrics and the API document are never limited.
    for path in ("/healthz", "/api/v1/openapi.json", "/metrics"):
        assert client.get(path).status_code == 200


def test_counters_live_in_redis_under_our_namespace(make):
    from workers import broker

    client = app_with(rate_limit_auth_per_login=TIGHT).test_client()
    _login(client, "someone")
    namespace = get_settings().redis_namespace
    keys = list(broker.client.scan_iter(match=f"{namespace}:ratelimit:*"))
    assert keys, "rate-limit counters must be in Redis, under the run's namespace"


def test_api_keeps_serving_and_limiting_when_redis_is_down(make):
    alice = make.user()
    dead_redis = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    client = app_with(redis_url=dead_redis, rate_limit_auth_per_login="2 per 30 seconds").test_client()

    tokens = _login(client, alice.username, alice.password)
    assert tokens.status_code == 200
    assert client.get("/api/v1/auth/me", headers=bearer(tokens.json["access_token"])).status_code == 200
    # In-memory fallback: the limit (on failures) still holds within this process.
    assert _login(client, alice.username).status_code == 401
    assert _login(client, alice.username).status_code == 401
    _assert_rate_limited_any(_login(client, alice.username, alice.password))


def _assert_rate_limited_any(response):
    assert response.status_code == 429
    assert response.json["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1


def test_limits_are_configurable_and_checked_at_start_up():
    import pytest

    from db.core.config import ConfigurationError

    with pytest.raises(ConfigurationError, match="LEDGERQ_RATE_LIMIT_AUTH_PER_IP"):
        app_with(rate_limit_auth_per_ip="lots please")
