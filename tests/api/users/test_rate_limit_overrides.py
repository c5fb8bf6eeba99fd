"""Per-user quota overrides: an admin gives a service user budgets of its own (endpoint
and CLI), audited, effective at once; every budget of a request is one Redis call."""

from __future__ import annotations

from click.testing import CliRunner

from api.cli import main
from api.extensions.rate_limit import EXTENSION_KEY
from tests.fixtures.http import app_with, assert_error, transfer
from tests.fixtures.ledger import audit_actions, audit_events

TIGHT = "3 per 10 seconds"


def _me(client, user):
    return client.get("/api/v1/auth/me", headers=user.headers)


def test_an_admins_override_gives_a_service_user_its_own_budget(make):
    admin, service, customer = make.user("admin"), make.user(), make.user()
    client = app_with(rate_limit_default=TIGHT).test_client()

    put = client.put(
        f"/api/v1/users/{service.id}/rate-limits",
        json={"requests": "50 per 10 seconds", "reason": "ERP integration"},
        headers=admin.headers,
    )
    assert put.status_code == 200, put.json
    assert put.json["requests"] == "50 per 10 seconds" and put.json["money"] is None
    assert put.json["updated_by"] == str(admin.id)

    assert [_me(client, service).status_code for _ in range(10)] == [200] * 10
    assert [_me(client, customer).status_code for _ in range(3)] == [200] * 3
    assert_error(_me(client, customer), 429, "rate_limited")  # the customer keeps the default

    action, data = audit_events(service.id)[-1]
    assert action == "user.rate_limit_overridden"
    assert data["requests"] == "50 per 10 seconds" and data["reason"] == "ERP integration"
    got = client.get(f"/api/v1/users/{service.id}/rate-limits", headers=admin.headers)
    assert got.status_code == 200 and got.json["reason"] == "ERP integration"

    # Back to the default, at once: 10 requests already counted in this window > 3.
    assert client.delete(f"/api/v1/users/{service.id}/rate-limits", headers=admin.headers).status_code == 204
    assert_error(_me(client, service), 429, "rate_limited")
    assert "user.rate_limit_override_cleared" in audit_actions(service.id)


def test_only_admins_set_overrides_and_limits_must_parse(client, make):
    admin, finance, someone = make.user("admin"), make.user("finance"), make.user()
    url = f"/api/v1/users/{someone.id}/rate-limits"
    body = {"requests": "6000 per minute", "reason": "integration"}
    assert client.put(url, json=body, headers=finance.headers).status_code == 403
    assert client.put(url, json=body, headers=someone.headers).status_code == 403
    assert_error(
        client.put(url, json={"requests": "lots", "reason": "x"}, headers=admin.headers),
        422,
        "validation_error",
    )
    assert_error(client.put(url, json={"reason": "nothing"}, headers=admin.headers), 422, "validation_error")
    assert_error(client.get(url, headers=admin.headers), 404, "not_found")  # nothing was stored
    assert_error(
        client.put(
            "/api/v1/users/00000000-0000-0000-0000-000000000000/rate-limits", json=body, headers=admin.headers
        ),
        404,
        "not_found",
    )


def test_the_cli_sets_and_clears_an_override(make):
    service = make.user()
    client = app_with(rate_limit_money_per_user=TIGHT).test_client()
    a, b = make.account(service, balance="100.00"), make.account(make.user())

    result = CliRunner().invoke(
        main,
        ["users", "rate-limits", service.username, "--money", "20 per 10 seconds", "--reason", "payroll"],
    )
    assert result.exit_code == 0, result.output
    assert [transfer(client, service, a, b).status_code for _ in range(6)] == [202] * 6
    assert audit_events(service.id)[-1][0] == "user.rate_limit_overridden"

    shown = CliRunner().invoke(main, ["users", "rate-limits", service.username])
    assert "money=20 per 10 seconds" in shown.output and "payroll" in shown.output
    assert CliRunner().invoke(main, ["users", "rate-limits", service.username, "--clear"]).exit_code == 0
    assert_error(transfer(client, service, a, b), 429, "rate_limited")


def test_all_budgets_of_a_request_are_one_redis_call(make):
    alice = make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    app = app_with(rate_limit_lease_max=1)  # no leases (test_rate_limit_leases.py): every request asks
    limiter = app.extensions[EXTENSION_KEY]
    calls = []
    script = limiter.script

    def counted(*args, **kwargs):
        calls.append(kwargs["args"])
        return script(*args, **kwargs)

    limiter.script = counted
    client = app.test_client()
    client.get("/api/v1/auth/me", headers=alice.headers)  # may load the overrides mirror first
    calls.clear()
    assert transfer(client, alice, a, b).status_code == 202
    assert len(calls) == 1
    scopes = calls[0][1::5]
    assert scopes == ["requests", "money"]  # the request budget and the money budget, together
