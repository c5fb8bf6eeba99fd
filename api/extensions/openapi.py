"""The OpenAPI document's conventions, applied to every operation in one place (an
apispec plugin) rather than repeated in each route:

* an `operationId` from a readable naming scheme (`createTransfer`, `getTransaction`,
  `listAccountEntries`, `freezeAccount`), so generated clients get usable names;
* the response headers the app really sends: `X-Request-ID` on every response,
  `Retry-After` on 429 and 503, and `Location` + `Idempotent-Replayed` on the 202 of an
  operation that takes an `Idempotency-Key` (the asynchronous submissions);
* a request-body example for every operation that has a body (api/examples.py).

Routes keep only their own facts (docstrings, schemas, the errors they can produce).
"""

from __future__ import annotations

import re
from typing import Any

from apispec import BasePlugin

from api.examples import REQUEST_EXAMPLES

# Operations whose name the scheme below would get wrong or make unreadable.
OPERATION_ID_OVERRIDES = {
    ("post", "/api/v1/auth/register"): "registerUser",
    ("post", "/api/v1/auth/login"): "login",
    ("post", "/api/v1/auth/refresh"): "refreshTokens",
    ("post", "/api/v1/auth/logout"): "logout",
    ("get", "/api/v1/auth/me"): "getCurrentUser",
    ("delete", "/api/v1/users/{user_id}"): "deactivateUser",
    ("put", "/api/v1/users/{user_id}"): "updateUser",
    ("get", "/api/v1/accounts/{account_id}/limits"): "getAccountLimits",
    ("get", "/api/v1/transactions/history"): "listTransactions",
    ("get", "/api/v1/balances/current"): "getCurrentBalances",
    ("get", "/api/v1/balances/historical"): "listHistoricalBalances",
    ("get", "/api/v1/balances/at-time"): "getBalanceAtTime",
    ("get", "/api/v1/fx/rates/{base}/{quote}"): "getRate",
    ("put", "/api/v1/fx/rates/{base}/{quote}"): "setRate",
    ("get", "/api/v1/fx/rates/{base}/{quote}/history"): "listRateHistory",
    ("get", "/api/v1/batches/{batch_id}/results.csv"): "getBatchResultsCsv",
    ("get", "/healthz"): "checkLiveness",
    ("get", "/readyz"): "checkReadiness",
    ("get", "/metrics"): "getMetrics",
}

# Path segments that group endpoints without naming a resource.
_NAMESPACES = {"api", "v1", "admin"}

HEADERS = {
    "X-Request-ID": {
        "description": "The request's id: the client's `X-Request-ID` when it is 1-128 of "
        "`[A-Za-z0-9._:-]`, a new UUID otherwise. It is in every log line of the request and "
        "of the worker that applies it.",
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying (rate limit, or a database that is "
        "unavailable or busy; nothing was recorded).",
        "schema": {"type": "integer", "minimum": 0},
    },
    "Location": {
        "description": "Where to poll the accepted resource (`GET` it, with `?wait=N` for a transaction).",
        "schema": {"type": "string", "example": "/api/v1/transactions/8a3c8a52-4f0e-4a55-9a43-5d7e0b1c2f10"},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this answer replays the original one for the same `Idempotency-Key` "
        "and body (nothing new was recorded); absent otherwise.",
        "schema": {"type": "string", "enum": ["true"]},
    },
}


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses")):
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


def _pascal(word: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_.]", word) if part)


def operation_id(method: str, path: str) -> str:
    """`verb + Noun` from the method and the path:

    GET /accounts -> listAccounts, POST /accounts -> createAccount,
    GET /accounts/{id} -> getAccount, DELETE /schedules/{id} -> deleteSchedule,
    GET /accounts/{id}/entries -> listAccountEntries, POST /accounts/{id}/freeze ->
    freezeAccount, POST /transactions/transfer -> createTransfer.
    """
    if (method, path) in OPERATION_ID_OVERRIDES:
        return OPERATION_ID_OVERRIDES[(method, path)]
    parts = [p for p in path.strip("/").split("/") if p not in _NAMESPACES]
    literals = [p for p in parts if not p.startswith("{")]
    item = parts[-1].startswith("{")
    head = literals[0]
    if item:  # /things/{id}
        verb = {"get": "get", "put": "replace", "patch": "update", "delete": "delete"}[method]
        return verb + _pascal(_singular(head))
    if len(literals) == 1:  # /things
        return ("list" + _pascal(head)) if method == "get" else ("create" + _pascal(_singular(head)))
    last = literals[-1]
    if parts[-2].startswith("{"):  # /things/{id}/sub
        if method == "post":  # an action on the thing
            return last + _pascal(_singular(head))
        verb = {"get": "list", "put": "replace", "patch": "update", "delete": "delete"}[method]
        return verb + _pascal(_singular(head)) + _pascal(last)
    # /things/kind: a sub-collection or a kind of thing to create
    return ("list" if method == "get" else "create") + _pascal(last)


def _header_ref(name: str) -> dict:
    return {"$ref": f"#/components/headers/{name}"}


class ConventionsPlugin(BasePlugin):
    def init_spec(self, spec) -> None:
        for name, header in HEADERS.items():
            spec.components.header(name, header)

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **kwargs: Any):
        for method, operation in (operations or {}).items():
            if method not in {"get", "put", "post", "patch", "delete"}:
                continue
            operation.setdefault("operationId", operation_id(method, path or ""))
            takes_idempotency_key = any(
                isinstance(p, dict) and p.get("name") == "Idempotency-Key"
                for p in operation.get("parameters", [])
            )
            for status, response in operation.get("responses", {}).items():
                if not isinstance(response, dict):
                    continue  # a reference to a component response (documented there)
                headers = response.setdefault("headers", {})
                headers.setdefault("X-Request-ID", _header_ref("X-Request-ID"))
                if str(status) in {"429", "503"}:
                    headers.setdefault("Retry-After", _header_ref("Retry-After"))
                if str(status) == "202" and takes_idempotency_key:
                    headers.setdefault("Location", _header_ref("Location"))
                    headers.setdefault("Idempotent-Replayed", _header_ref("Idempotent-Replayed"))
            examples = REQUEST_EXAMPLES.get(operation["operationId"], {})
            for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
                if media_type in examples:
                    content.setdefault("example", examples[media_type])
