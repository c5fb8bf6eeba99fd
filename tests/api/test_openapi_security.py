"""The OpenAPI document tells the truth about auth: the Bearer scheme, and 401/403/429
on every protected operation; and what it marks protected really is (and vice versa)."""

from __future__ import annotations

import re
import uuid

PUBLIC = {
    "POST /api/v1/auth/register",
    "POST /api/v1/auth/login",
    "POST /api/v1/auth/refresh",
    "POST /api/v1/auth/logout",
}
# Outside /api/v1: never rate limited, never authenticated (api/extensions/rate_limit.py).
PROBES = {"GET /healthz", "GET /readyz", "GET /metrics"}


def _operations(spec):
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method.upper(), path, operation


def test_bearer_scheme_is_declared(client):
    spec = client.get("/api/v1/openapi.json").json
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }


def test_every_protected_operation_documents_401_403_429(client):
    spec = client.get("/api/v1/openapi.json").json
    protected = 0
    for method, path, operation in _operations(spec):
        where = f"{method} {path}"
        responses = set(operation["responses"])
        if where in PROBES:
            assert "security" not in operation and "429" not in responses, where
            continue
        assert "429" in responses, f"{where}: every API call can be rate limited"
        if f"{method} {path}" in PUBLIC:
            assert "security" not in operation, where
            continue
        assert operation.get("security") == [{"bearerAuth": []}], f"{where} is neither public nor protected"
        assert {"401", "403", "429"} <= responses, f"{where} documents {sorted(responses)}"
        for status in ("401", "403", "429"):
            schema = operation["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, f"{where} {status}"
        protected += 1
    assert protected >= 10


def test_documented_security_matches_behaviour(client):
    """Without a token, every operation marked protected answers 401, and no operation
    marked public does."""
    spec = client.get("/api/v1/openapi.json").json
    for method, path, operation in _operations(spec):
        url = re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)
        response = client.open(url, method=method, json={} if method in ("POST", "PUT", "PATCH") else None)
        if "security" in operation:
            assert response.status_code == 401, (
                f"{method} {path} answered {response.status_code} without a token"
            )
            assert response.json["error"]["code"] == "unauthorized"
        else:
            assert response.status_code != 401, f"{method} {path} is protected but not documented so"
