"""The project Blueprint's decorators (api/extensions/smorest.py) hold for every route
that uses them: `@blp.idempotent` on every endpoint that creates money movement, and
`@blp.keyset_page` on every list endpoint."""

from __future__ import annotations

from sqlalchemy import func, select

from db.models import Batch
from db.session import unit_of_work
from tests.fixtures.batches import csv_bytes, upload

MONEY_MOVEMENT = [
    "/api/v1/transactions/transfer",
    "/api/v1/transactions/credit",
    "/api/v1/transactions/debit",
    "/api/v1/transactions/{transaction_id}/reverse",
    "/api/v1/batches",
]


def _parameters(operation: dict) -> dict[tuple[str, str], dict]:
    return {(p["in"], p["name"]): p for p in operation.get("parameters", [])}


def test_every_money_movement_documents_the_idempotency_key(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    for path in MONEY_MOVEMENT:
        parameters = _parameters(paths[path]["post"])
        assert ("header", "Idempotency-Key") in parameters, path
        assert parameters[("header", "Idempotency-Key")]["schema"]["maxLength"] == 255


def test_every_list_endpoint_takes_a_cursor_and_a_limit(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    lists = {
        path: operation
        for path, item in paths.items()
        for method, operation in item.items()
        if method == "get" and ("query", "cursor") in _parameters(operation)
    }
    assert {
        "/api/v1/transactions/history",
        "/api/v1/accounts",
        "/api/v1/accounts/{account_id}/entries",
        "/api/v1/balances/current",
        "/api/v1/balances/historical",
        "/api/v1/batches",
        "/api/v1/batches/{batch_id}/items",
        "/api/v1/schedules",
        "/api/v1/schedules/{schedule_id}/runs",
        "/api/v1/users",
        "/api/v1/admin/audit-logs",
    } <= set(lists)
    for path, operation in lists.items():
        assert ("query", "limit") in _parameters(operation), path


def test_a_malformed_idempotency_key_on_a_batch_is_refused_like_on_a_transfer(client, make):
    finance, alice = make.user("finance"), make.user()
    a = make.account(alice)
    response = upload(
        client, finance, csv_bytes(f",{a},1.00,USD,k"), headers={"Idempotency-Key": "has space"}
    )
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == "validation_error"
    assert list(response.json["error"]["details"]) == ["Idempotency-Key"]
    with unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Batch)) == 0
