"""The OpenAPI document is complete enough to generate a usable client from: a unique
operationId, a summary and a description on every operation, request examples the API
accepts, the response headers the app really sends, the real error envelope, servers and
the probes. (tests/api/extensions/test_generated_client.py generates one and uses it.)"""

from __future__ import annotations

import pytest

from api.extensions.openapi import operation_id
from tests.fixtures.http import API, accepted

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def spec(client):
    return client.get("/api/v1/openapi.json").json


def _operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def test_every_operation_has_a_unique_readable_operation_id(spec):
    ids = [operation.get("operationId") for _, _, operation in _operations(spec)]
    assert len(ids) >= 50 and all(ids), [
        f"{m} {p}" for m, p, o in _operations(spec) if not o.get("operationId")
    ]
    assert len(set(ids)) == len(ids), sorted(i for i in ids if ids.count(i) > 1)
    for op_id in ids:
        assert op_id.isidentifier() and op_id[0].islower() and "_" not in op_id, op_id
    by_route = {f"{m.upper()} {p}": o["operationId"] for m, p, o in _operations(spec)}
    assert by_route["POST /api/v1/transactions/transfer"] == "createTransfer"
    assert by_route["GET /api/v1/transactions/{transaction_id}"] == "getTransaction"
    assert by_route["GET /api/v1/accounts/{account_id}/entries"] == "listAccountEntries"
    assert by_route["POST /api/v1/accounts/{account_id}/freeze"] == "freezeAccount"
    assert by_route["GET /readyz"] == "checkReadiness"


def test_the_naming_scheme_without_overrides():
    assert operation_id("get", "/api/v1/widgets") == "listWidgets"
    assert operation_id("post", "/api/v1/widgets") == "createWidget"
    assert operation_id("get", "/api/v1/widgets/{widget_id}") == "getWidget"
    assert operation_id("put", "/api/v1/widgets/{widget_id}") == "replaceWidget"
    assert operation_id("patch", "/api/v1/widgets/{widget_id}") == "updateWidget"
    assert operation_id("delete", "/api/v1/admin/dead-letters/{message_id}") == "deleteDeadLetter"
    assert operation_id("post", "/api/v1/batches/{batch_id}/cancel") == "cancelBatch"
    assert operation_id("get", "/api/v1/batches/{batch_id}/items") == "listBatchItems"
    assert operation_id("get", "/api/v1/entries") == "listEntries"


def test_every_operation_has_a_summary_and_a_description(spec):
    for method, path, operation in _operations(spec):
        where = f"{method.upper()} {path}"
        summary, description = operation.get("summary", ""), operation.get("description", "")
        assert summary and "\n" not in summary, f"{where}: one-line summary, got {summary!r}"
        assert len(description) >= 40 and description != summary, f"{where}: no description"


def _schema_class(app, ref: str):
    """The marshmallow schema behind a `#/components/schemas/<name>` reference."""
    name = ref.rsplit("/", 1)[-1]
    api = app.extensions["ledgerq_api"]
    for schema_key, component_name in api.ma_plugin.converter.refs.items():
        if component_name == name:
            return schema_key[0]  # apispec's key: (schema class, modifiers)
    raise AssertionError(f"no marshmallow schema registered as {name}")


def test_every_request_body_has_an_example_its_own_schema_accepts(app, spec):
    checked = 0
    for method, path, operation in _operations(spec):
        for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
            where = f"{method.upper()} {path} {media_type}"
            assert "example" in content, f"{where}: no example"
            schema = _schema_class(app, content["schema"]["$ref"])()
            example = dict(content["example"])
            if media_type == "multipart/form-data":
                # The upload is read as a file, not loaded as a field: check it is CSV text.
                assert example.pop("file").startswith("from_account_id,to_account_id,amount"), where
                schema = type(schema)(exclude=("file",))
            errors = schema.validate(example)
            assert not errors, f"{where}: the example is refused: {errors}"
            checked += 1
    assert checked >= 15


def test_error_responses_are_the_real_envelope(spec):
    components = spec["components"]
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    assert components["responses"]["DEFAULT_ERROR"]["content"]["application/json"]["schema"] == envelope
    assert "Error" not in components["schemas"], "flask-smorest's {code,status,errors} is not what we send"
    for method, path, operation in _operations(spec):
        assert operation["responses"]["default"] == {"$ref": "#/components/responses/DEFAULT_ERROR"}, path
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) and path.startswith(API) and "content" in response:
                assert response["content"]["application/json"]["schema"] == envelope, (method, path, status)


def test_documented_headers(spec):
    headers = spec["components"]["headers"]
    assert set(headers) == {"X-Request-ID", "Retry-After", "Location", "Idempotent-Replayed"}
    with_location = []
    for method, path, operation in _operations(spec):
        for status, response in operation["responses"].items():
            if "$ref" in response:
                continue
            documented = set(response.get("headers", {}))
            assert "X-Request-ID" in documented, (method, path, status)
            if status in ("429", "503"):
                assert "Retry-After" in documented, (method, path, status)
            if "Location" in documented:
                assert {"Idempotent-Replayed"} <= documented
                with_location.append(f"{method.upper()} {path}")
    assert sorted(with_location) == [
        "POST /api/v1/batches",
        "POST /api/v1/batches/{batch_id}/reverse",
        "POST /api/v1/transactions/credit",
        "POST /api/v1/transactions/debit",
        "POST /api/v1/transactions/exchange",
        "POST /api/v1/transactions/hold",
        "POST /api/v1/transactions/transfer",
        "POST /api/v1/transactions/{transaction_id}/capture",
        "POST /api/v1/transactions/{transaction_id}/reverse",
    ]


def test_the_documented_headers_are_sent(client, make):
    """What the document promises for a submission, a real one carries."""
    finance = make.user("finance")
    account = make.account(make.user())
    headers = {**finance.headers, "Idempotency-Key": "doc-headers-1", "X-Request-ID": "req-doc-1"}
    body = {"account_id": str(account), "amount": "1.00", "currency": "USD"}
    first = client.post(f"{API}/transactions/credit", json=body, headers=headers)
    tx_id = accepted(first)
    assert first.headers["Location"] == f"{API}/transactions/{tx_id}"
    assert first.headers["X-Request-ID"] == "req-doc-1"
    assert "Idempotent-Replayed" not in first.headers
    again = client.post(f"{API}/transactions/credit", json=body, headers=headers)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"


def test_servers_and_probes_are_documented(spec):
    assert spec["servers"][0]["url"] == "/"
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert "get" in spec["paths"][probe], probe
    readiness = spec["paths"]["/readyz"]["get"]["responses"]
    assert {"200", "503"} <= set(readiness)
