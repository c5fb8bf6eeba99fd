"""HTTP hygiene: security headers, no-store, HSTS over HTTPS, trusted proxies, CORS
allowlist, body size limit, and unknown JSON fields refused on every write."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.fixtures.http import app_with

ORIGIN = "https://app.example.com"


def test_security_headers_on_every_kind_of_response(client, make):
    alice = make.user()
    responses = {
        "authenticated": client.get("/api/v1/auth/me", headers=alice.headers),
        "error": client.get("/api/v1/auth/me"),
        "unknown route": client.get("/api/v1/nope"),
        "probe": client.get("/healthz"),
    }
    for name, response in responses.items():
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
        assert response.headers["Referrer-Policy"] == "no-referrer", name
        assert response.headers["X-Frame-Options"] == "DENY", name
        assert response.headers["X-Request-ID"], name


def test_tokens_and_authenticated_data_are_never_cached(client, make):
    alice = make.user()
    token_response = client.post(
        "/api/v1/auth/login", json={"username": alice.username, "password": alice.password}
    )
    assert token_response.headers["Cache-Control"] == "no-store"
    assert client.get("/api/v1/auth/me", headers=alice.headers).headers["Cache-Control"] == "no-store"


def test_hsts_only_over_https(client):
    assert "Strict-Transport-Security" not in client.get("/healthz").headers
    secure = client.get("/healthz", base_url="https://localhost")
    assert re.fullmatch(r"max-age=\d+; includeSubDomains", secure.headers["Strict-Transport-Security"])
    off = app_with(hsts_max_age_s=0).test_client().get("/healthz", base_url="https://localhost")
    assert "Strict-Transport-Security" not in off.headers


def test_forwarded_headers_count_only_behind_configured_proxies():
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    direct = app_with(proxy_hops=0).test_client().get("/healthz", headers=forged)
    assert "Strict-Transport-Security" not in direct.headers
    proxied = app_with(proxy_hops=1).test_client().get("/healthz", headers=forged)
    assert "Strict-Transport-Security" in proxied.headers


def test_spoofed_x_forwarded_for_does_not_escape_the_ip_limit():
    client = app_with(proxy_hops=0, rate_limit_auth_per_ip="2 per 10 seconds").test_client()
    statuses = [
        client.post(
            "/api/v1/auth/login",
            json={"username": f"u{i}", "password": "whatever password"},
            headers={"X-Forwarded-For": f"198.51.100.{i}"},
        ).status_code
        for i in range(3)
    ]
    assert statuses == [401, 401, 429]


def test_no_cors_headers_unless_origins_are_configured(client):
    preflight = client.options(
        "/api/v1/auth/login",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert (
        "Access-Control-Allow-Origin"
        not in client.get("/api/v1/openapi.json", headers={"Origin": ORIGIN}).headers
    )


def test_cors_allowlist(make):
    client = app_with(cors_origins_csv=f"{ORIGIN}, https://ops.example.com").test_client()
    preflight = client.options(
        "/api/v1/transactions/transfer",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type, Idempotency-Key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert {"authorization", "content-type", "idempotency-key"} <= {h.strip() for h in allowed.split(",")}
    assert "Access-Control-Allow-Credentials" not in preflight.headers

    alice = make.user()
    simple = client.get("/api/v1/auth/me", headers={**alice.headers, "Origin": ORIGIN})
    assert simple.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "x-request-id" in simple.headers["Access-Control-Expose-Headers"].lower()

    evil = client.options(
        "/api/v1/auth/login",
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in evil.headers


def test_oversized_bodies_are_refused_with_413(client, make):
    alice = make.user()
    huge = "x" * (1024 * 1024 + 1)
    for path, headers in (("/api/v1/auth/login", {}), ("/api/v1/transactions/transfer", alice.headers)):
        response = client.post(path, json={"username": huge, "password": huge}, headers=headers)
        assert response.status_code == 413, path
        assert response.json["error"]["code"] == "payload_too_large"


def _json_write_operations(client):
    spec = client.get("/api/v1/openapi.json").json
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method in ("post", "put", "patch") and "application/json" in operation.get(
                "requestBody", {}
            ).get("content", {}):
                yield method.upper(), re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)


def test_unknown_fields_are_refused_on_every_json_write(client, make):
    admin = make.user("admin")
    walked = []
    for method, url in _json_write_operations(client):
        response = client.open(url, method=method, json={"zz_not_a_field": 1}, headers=admin.headers)
        assert response.status_code == 422, f"{method} {url}: {response.status_code} {response.json}"
        assert "zz_not_a_field" in response.json["error"]["details"], f"{method} {url}"
        walked.append(f"{method} {url}")
    assert len(walked) >= 9  # register, login, refresh, logout, PUT user, accounts, 3 money POSTs


@pytest.mark.parametrize("body", ['{"username": ', "[]", "null"], ids=["truncated", "array", "null"])
def test_malformed_json_is_a_client_error(client, body):
    response = client.post("/api/v1/auth/login", data=body, content_type="application/json")
    assert response.status_code in (400, 422)
    assert response.json["error"]["code"] in ("invalid_json", "validation_error")
