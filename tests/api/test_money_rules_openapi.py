"""The money rules are part of the published contract, not only of the code."""

from __future__ import annotations

from db.models import FAILURE_CODES


def test_openapi_documents_storage_failure_codes_and_the_new_endpoints(client):
    spec = client.get("/api/v1/openapi.json").json
    description = spec["info"]["description"]
    assert "BIGINT minor units" in description
    for code in (*FAILURE_CODES, "same_account", "validation_error"):
        assert f"`{code}`" in description, code

    paths = spec["paths"]
    for action in ("freeze", "unfreeze", "close"):
        responses = paths[f"/api/v1/accounts/{{account_id}}/{action}"]["post"]["responses"]
        assert {"200", "403", "404", "409"} <= set(responses)
    limits = paths["/api/v1/accounts/{account_id}/limits"]
    assert {"get", "put", "patch"} <= set(limits)
    transfer_422 = paths["/api/v1/transactions/transfer"]["post"]["responses"]["422"]["description"]
    assert "limit_exceeded" in transfer_422 and "currency_mismatch" in transfer_422

    failure_code = spec["components"]["schemas"]["Transaction"]["properties"]["failure_code"]
    assert set(FAILURE_CODES) <= set(failure_code["enum"])
    update = spec["components"]["schemas"]["LimitsUpdate"]["properties"]
    assert set(update) == {
        "max_per_transaction",
        "daily_outgoing_limit",
        "per_minute_outgoing_count",
        "overdraft_limit",
    }
