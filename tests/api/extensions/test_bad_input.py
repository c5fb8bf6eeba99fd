"""Issue 11, item 11: inputs that answered 500 internal_error. Each gets a 4xx in the
envelope and records nothing (no transaction, account, schedule, batch or audit row)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.fixtures.ledger import sql

NUL = "a\u0000b"
COUNTED = ["transactions", "accounts", "standing_orders", "batches", "audit_logs", "users"]


def _counts() -> dict[str, int]:
    existing = {row[0] for row in sql("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    return {t: sql(f"SELECT count(*) FROM {t}")[0][0] for t in COUNTED if t in existing}


def _assert_4xx_envelope(response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data(as_text=True)[:300])
    error = response.json["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] != "internal_error"


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.fixture
def world(make):
    alice, bob = make.user(), make.user()
    finance, admin = make.user("finance"), make.user("admin")
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    return {"alice": alice, "finance": finance, "admin": admin, "a": a, "b": b}


def _requests(w):
    """(who, method, path, json body or None, query) of every reproduction."""
    transfer = {
        "from_account_id": str(w["a"]),
        "to_account_id": str(w["b"]),
        "amount": "1.00",
        "currency": "USD",
    }
    order = {**transfer, "interval_seconds": 3600}
    batch_item = {"to_account_id": str(w["b"]), "amount": "1.00", "currency": "USD"}
    # JSON nested 1,000 deep (written as text: json.dumps itself would recurse too deep).
    deep = json.dumps({**transfer, "metadata": {"deep": "@"}}).replace('"@"', "[" * 1000 + "]" * 1000)
    return [
        (None, "POST", "/api/v1/auth/login", {"username": NUL, "password": "whatever password"}, None),
        (None, "POST", "/api/v1/auth/login", {"email": NUL, "password": "whatever password"}, None),
        (
            None,
            "POST",
            "/api/v1/auth/register",
            {"username": NUL, "email": "n@example.com", "password": "k3!v9xZp_Lm2Rt8"},
            None,
        ),
        ("alice", "POST", "/api/v1/transactions/transfer", {**transfer, "reference": NUL}, None),
        ("alice", "POST", "/api/v1/transactions/transfer", {**transfer, "metadata": {"note": NUL}}, None),
        ("alice", "POST", "/api/v1/transactions/transfer", {**transfer, "metadata": {NUL: "key"}}, None),
        ("alice", "POST", "/api/v1/accounts", {"currency": "USD", "name": NUL}, None),
        ("admin", "GET", "/api/v1/admin/audit-logs", None, {"entity_type": NUL}),
        ("admin", "GET", "/api/v1/admin/audit-logs", None, {"entity_id": NUL}),
        (
            "finance",
            "POST",
            "/api/v1/batches",
            {"items": [{**batch_item, "from_account_id": str(w["a"]), "reference": NUL}]},
            None,
        ),
        ("alice", "POST", "/api/v1/transactions/transfer", deep, None),
        ("alice", "POST", "/api/v1/schedules", {**order, "interval_seconds": 2**31}, None),
        ("alice", "POST", "/api/v1/schedules", {**order, "interval_seconds": 2**63}, None),
        ("finance", "PATCH", f"/api/v1/accounts/{w['a']}/limits", {"per_minute_outgoing_count": 2**31}, None),
        ("finance", "PATCH", f"/api/v1/accounts/{w['a']}/limits", {"per_minute_outgoing_count": 2**64}, None),
        ("admin", "GET", "/api/v1/admin/audit-logs", None, {"cursor": _cursor("v1:99999999999999999999")}),
        ("finance", "GET", "/api/v1/batches", None, {"cursor": _cursor("v1:99999999999999999999")}),
        ("finance", "GET", "/api/v1/batches", None, {"cursor": _cursor("v1:-99999999999999999999")}),
        (
            "alice",
            "GET",
            "/api/v1/transactions/history",
            None,
            {"cursor": _cursor("v1:99999999999999999999")},
        ),
    ]


def test_reproductions_of_the_review_get_4xx_and_record_nothing(client, world):
    before = _counts()
    failures = []
    for who, method, path, body, query in _requests(world):
        headers = world[who].headers if who else {}
        data = body if isinstance(body, str) else json.dumps(body) if body is not None else None
        response = client.open(
            path,
            method=method,
            data=data,
            content_type="application/json" if data else None,
            query_string=query,
            headers=headers,
        )
        try:
            _assert_4xx_envelope(response)
        except (AssertionError, TypeError, KeyError) as error:
            failures.append(f"{method} {path} {query or ''} {str(body)[:80]}: {error}")
    assert not failures, "\n".join(failures)
    assert _counts() == before
