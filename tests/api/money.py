"""Small helpers for the money-rules tests: requests as a client makes them, and the
ledger posting applied synchronously (the worker's own function, without the queue)."""

from __future__ import annotations

import uuid

from tests.fixtures import transaction

API = "/api/v1"


def transfer(client, user, source, target, amount: str, currency: str = "USD", **extra):
    body = {
        "from_account_id": str(source),
        "to_account_id": str(target),
        "amount": amount,
        "currency": currency,
        **extra,
    }
    return client.post(f"{API}/transactions/transfer", json=body, headers=user.headers)


def debit(client, user, account, amount: str, currency: str = "USD"):
    body = {"account_id": str(account), "amount": amount, "currency": currency}
    return client.post(f"{API}/transactions/debit", json=body, headers=user.headers)


def credit(client, finance, account, amount: str, currency: str = "USD"):
    body = {"account_id": str(account), "amount": amount, "currency": currency}
    return client.post(f"{API}/transactions/credit", json=body, headers=finance.headers)


def set_limits(client, finance, account, method: str = "patch", **limits):
    return client.open(
        f"{API}/accounts/{account}/limits", method=method.upper(), json=limits, headers=finance.headers
    )


def accepted(response) -> str:
    assert response.status_code == 202, response.json
    return response.json["id"]


def apply(tx_id) -> str:
    """Run the worker's posting for one transaction now; return its final status."""
    from db.ledger.posting import apply_transaction
    from db.session import unit_of_work

    with unit_of_work() as uow:
        apply_transaction(uow.session, uuid.UUID(str(tx_id)))
    return transaction(tx_id).status


def resend(tx_ids) -> None:
    """What the sweeper does for rows Redis no longer holds (the `worker` fixture flushes
    the namespace when it starts)."""
    from workers.transactions import apply_transaction

    for tx_id in tx_ids:
        apply_transaction.send(transaction_id=str(tx_id))


def error_code(response) -> str:
    return response.json["error"]["code"]
