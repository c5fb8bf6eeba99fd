"""Request-body examples for the OpenAPI document, by operationId (applied to every
operation by api/extensions/openapi.py; tests/api/test_openapi_document.py loads each one
through the operation's own schema, so an example cannot drift from what the API accepts).
Values are by media type: the batch upload takes CSV (multipart) or JSON."""

from __future__ import annotations

JSON = "application/json"
MULTIPART = "multipart/form-data"

_ALICE_MAIN = "3f1c2a9e-7b64-4d2f-9a1e-0c5b8d7e6f21"
_ALICE_SAVINGS = "b7e4d1a0-2c3f-4e5a-8b6c-9d0e1f2a3b4c"
_SECRET = "correct-horse-battery-staple"

REQUEST_EXAMPLES: dict[str, dict[str, object]] = {
    "registerUser": {JSON: {"username": "alice", "email": "alice@example.com", "password": _SECRET}},
    "login": {JSON: {"username": "alice", "password": _SECRET}},
    "refreshTokens": {JSON: {"refresh_token": "eyJhbGciOiJIUzI1NiJ9.refresh-token-from-login.sig"}},
    "logout": {JSON: {"refresh_token": "eyJhbGciOiJIUzI1NiJ9.refresh-token-from-login.sig"}},
    "updateUser": {JSON: {"email": "alice@example.org"}},
    "replaceUserRateLimits": {
        JSON: {"requests": "6000 per minute", "money": "3000 per minute", "reason": "payroll integration"}
    },
    "createWebhook": {
        JSON: {
            "url": "https://hooks.example.com/ledgerq",
            "events": ["transaction.completed", "transaction.failed"],
            "description": "order service",
        }
    },
    "createAccount": {JSON: {"currency": "USD", "name": "main"}},
    "freezeAccount": {JSON: {"reason": "suspected card fraud, ticket 4711"}},
    "unfreezeAccount": {JSON: {"reason": "ticket 4711 resolved"}},
    "closeAccount": {JSON: {"reason": "customer request"}},
    "replaceAccountLimits": {
        JSON: {
            "max_per_transaction": "1000.00",
            "daily_outgoing_limit": "5000.00",
            "per_minute_outgoing_count": 10,
            "overdraft_limit": "0",
        }
    },
    "updateAccountLimits": {JSON: {"daily_outgoing_limit": "2500.00"}},
    "createTransfer": {
        JSON: {
            "from_account_id": _ALICE_MAIN,
            "to_account_id": _ALICE_SAVINGS,
            "amount": "25.50",
            "currency": "USD",
            "reference": "rent 2026-11",
        }
    },
    "createHold": {
        JSON: {
            "from_account_id": _ALICE_MAIN,
            "to_account_id": _ALICE_SAVINGS,
            "amount": "80.00",
            "currency": "USD",
            "expires_in_seconds": 86400,
            "reference": "hotel deposit",
        }
    },
    "captureTransaction": {JSON: {"amount": "62.40"}},
    "reverseBatch": {JSON: {"mode": "atomic"}},
    "createExchange": {
        JSON: {
            "from_account_id": _ALICE_MAIN,
            "to_account_id": "5d2e8f14-6a3b-4c7d-9e0f-1a2b3c4d5e6f",
            "amount": "100.00",
            "currency": "USD",
            "rate": "0.9215",
            "reference": "EUR for the trip",
        }
    },
    "setRate": {JSON: {"rate": "0.9215", "fee_bps": 15}},
    "createCredit": {JSON: {"account_id": _ALICE_MAIN, "amount": "100.00", "currency": "USD"}},
    "createDebit": {
        JSON: {"account_id": _ALICE_MAIN, "amount": "40.00", "currency": "USD", "reference": "ATM"}
    },
    "createBatch": {
        JSON: {
            "mode": "independent",
            "reference": "payroll 2026-11",
            "items": [
                {
                    "from_account_id": _ALICE_MAIN,
                    "to_account_id": _ALICE_SAVINGS,
                    "amount": "10.00",
                    "currency": "USD",
                    "reference": "line-1",
                },
                {"to_account_id": _ALICE_MAIN, "amount": "5.00", "currency": "USD", "reference": "line-2"},
            ],
        },
        MULTIPART: {
            "mode": "atomic",
            "file": "from_account_id,to_account_id,amount,currency,reference\n"
            f"{_ALICE_MAIN},{_ALICE_SAVINGS},10.00,USD,line-1\n",
        },
    },
    "createSchedule": {
        JSON: {
            "from_account_id": _ALICE_MAIN,
            "to_account_id": _ALICE_SAVINGS,
            "amount": "25.00",
            "currency": "USD",
            "cron": "0 9 1 * *",
            "timezone": "Europe/Berlin",
            "reference": "monthly savings",
        }
    },
}
