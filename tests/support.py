"""Small helpers for the scenario tests: concurrent API calls, ledger checks, raw SQL."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import text

T = TypeVar("T")


def concurrently(app, count: int, call: Callable[[Any, int], T]) -> list[T]:
    """Run `call(client, i)` for i in range(count), each in its own thread with its own
    test client, all released together by a barrier so the requests really overlap."""
    barrier = threading.Barrier(count)

    def run(i: int) -> T:
        client = app.test_client()
        barrier.wait(timeout=30)
        return call(client, i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def ledger_problems() -> list[str]:
    """`ledgerq verify`: every invariant of DESIGN.md, [] when the ledger is sound."""
    from db.ledger.verify import verify_ledger
    from db.session import unit_of_work

    with unit_of_work() as uow:
        return verify_ledger(uow.session)


def sql(statement: str, **params) -> list:
    """Run one statement in its own committed transaction; rows if it returns any."""
    from db.session import get_engine

    with get_engine().begin() as connection:
        result = connection.execute(text(statement), params)
        return result.all() if result.returns_rows else []


def entries_of(tx_id) -> list[tuple[str, int]]:
    """(account_id, signed amount_minor) of every ledger entry of one transaction."""
    return [
        (str(account_id), amount)
        for account_id, amount in sql(
            "SELECT account_id, amount_minor FROM ledger_entries WHERE transaction_id = :id ORDER BY id",
            id=str(tx_id),
        )
    ]


def closed_port() -> int:
    """A local TCP port nothing listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def transfer(client, user, source, target, amount: str, currency: str = "USD", headers=None, **fields):
    """POST /transactions/transfer as `user`; extra body fields as keywords."""
    body = {"from_account_id": str(source), "to_account_id": str(target), "amount": amount}
    body["currency"] = currency
    return client.post(
        "/api/v1/transactions/transfer", json={**body, **fields}, headers={**user.headers, **(headers or {})}
    )


def pending_transfer(user, source, target, amount: str, currency: str = "USD") -> str:
    """A durable `pending` transfer recorded by the real service, with no message sent:
    the state right after the API's commit when the enqueue was lost."""
    return pending_movement(user, "transfer", amount, currency, from_account_id=source, to_account_id=target)


def pending_movement(user, type_: str, amount: str, currency: str = "USD", **accounts) -> str:
    """Any money movement (transfer, credit, debit) recorded `pending`, no message sent."""
    from db.core.config import get_settings
    from db.session import unit_of_work
    from db.transactions.service import MoneyMovement, submit

    movement = MoneyMovement(type=type_, amount=amount, currency=currency, **accounts)
    with unit_of_work() as uow:
        submitted = submit(
            uow.session, user.principal, movement, idempotency_key=None, settings=get_settings()
        )
    return str(submitted.transaction.id)


def dead_lettered_transaction_ids(queue: str = "transactions") -> list[str]:
    """Transaction ids of the messages in Dramatiq's dead-letter queue, read straight from
    the broker's Redis keys (`{ns}:{queue}.XQ` index, `.XQ.msgs` payloads)."""
    from dramatiq import Message

    from workers import broker

    index = f"{broker.namespace}:{queue}.XQ"
    ids = broker.client.zrange(index, 0, -1)
    payloads = broker.client.hmget(f"{index}.msgs", ids) if ids else []
    return [Message.decode(p).kwargs.get("transaction_id") for p in payloads if p is not None]


def drain(worker, queue: str = "transactions", timeout_ms: int = 20_000) -> None:
    """Wait until every message of `queue` (and its delay queue) was processed and
    acked or dead-lettered, then until the worker is idle."""
    from workers import broker

    broker.join(queue, timeout=timeout_ms)
    worker.join()


def assert_error(response, status: int, code: str) -> dict:
    """The envelope {"error": {"code", "message", "details"}} and nothing else."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.json
    assert list(body) == ["error"]
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text
    assert response.headers.get("X-Request-ID")
    return body["error"]
