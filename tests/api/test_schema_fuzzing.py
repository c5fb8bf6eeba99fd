"""Schema-driven fuzzing: schemathesis generates requests for every operation of
/api/v1/openapi.json, as a customer, finance and admin, and checks that none is a
server error, every status is one the operation documents, and every response matches
its documented schema.

Bounded for the default run: a fixed seed (derandomized) and FUZZ_EXAMPLES examples
per operation. The long mode (README.md, "Reliability"):
    FUZZ_EXAMPLES=500 pytest tests/api/test_schema_fuzzing.py
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4"))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
# Operations whose side effects would end the fuzzing identity's own session or need a
# broker message id; they are fuzzed with their bodies like the rest, as anyone else.
SKIP = {("DELETE", "/api/v1/users/{user_id}")}


@pytest.mark.parametrize("role", ["customer", "finance", "admin"])
def test_every_operation_as_every_role(app, make, role):
    user = make.user(role)
    peer = make.user()
    make.account(user, balance="100.00")
    make.account(peer)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    operations = 0
    statuses: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIP:
            continue
        operations += 1

        @settings(
            max_examples=FUZZ_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def fuzz(case):
            response = case.call_and_validate(headers=user.headers, checks=CHECKS)
            statuses.append(response.status_code)

        try:
            fuzz()
        except Exception as failure:  # noqa: BLE001 - collect every operation's finding
            failures.append(f"{operation.method.upper()} {operation.path}: {str(failure)[:600]}")
    assert operations > 30, operations
    assert len(statuses) >= operations, "every operation was called"
    assert any(200 <= status < 300 for status in statuses), statuses
    assert not failures, f"{len(failures)} operation(s) failed:\n" + "\n\n".join(failures)


def test_the_documented_default_error_is_the_envelope_the_api_sends(client):
    """It was flask-smorest's `{code, status, errors}` (additionalProperties: false),
    which no response of the API matches."""
    spec = client.get("/api/v1/openapi.json").json
    default = spec["components"]["responses"]["DEFAULT_ERROR"]["content"]["application/json"]["schema"]
    assert default == {"$ref": "#/components/schemas/ErrorEnvelope"}
    assert "Error" not in spec["components"]["schemas"]


def test_current_balance_documents_both_of_its_shapes(app, make):
    """`GET /balances/current?account_id=` answered a Balance the spec did not list."""
    alice = make.user()
    account = make.account(alice, balance="5.00")
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operation = schema["/api/v1/balances/current"]["GET"]
    for query in ({"account_id": str(account)}, {}):
        case = operation.Case(query=query)
        response = case.call_and_validate(headers=alice.headers, checks=CHECKS)
        assert response.status_code == 200
