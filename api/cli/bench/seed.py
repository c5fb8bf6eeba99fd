"""The bench's data, made through the real services (users, accounts, credits applied by
the ledger posting) in the scenario's fresh database, and the HTTP calls a scenario
needs besides the load itself (log in, create a few transactions)."""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from db.core.principal import Principal

# Enough for any scenario at any speed, far under LEDGERQ_MAX_AMOUNT (10^9 major units).
FUNDING = "900000000.00"


@dataclass
class Customer:
    id: uuid.UUID
    username: str
    password: str
    accounts: list[uuid.UUID] = field(default_factory=list)
    token: str = ""

    @property
    def principal(self) -> Principal:
        return Principal(id=self.id, role="customer", username=self.username)


def users(count: int, role: str = "customer", prefix: str = "bench") -> list[Customer]:
    """`count` users (scrypt makes each cost ~0.1 s: hashed on 4 threads, since hashlib
    releases the GIL)."""
    from db.auth.users import create_user
    from db.session import unit_of_work

    def make(n: int) -> Customer:
        username = f"{prefix}-{role}-{n}"
        password = secrets.token_urlsafe(12)
        with unit_of_work() as uow:
            user = create_user(
                uow.session, username=username, email=f"{username}@example.com", password=password, role=role
            )
            return Customer(user.id, username, password)

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(make, range(count)))


def accounts(owner: Principal, count: int) -> list[uuid.UUID]:
    from db.accounts.service import open_account
    from db.session import unit_of_work

    with unit_of_work() as uow:
        return [
            open_account(uow.session, owner, currency="USD", name="bench", owner_id=None).id
            for _ in range(count)
        ]


def fund(finance: Principal, account_ids: list[uuid.UUID], amount: str = FUNDING) -> None:
    """Credit each account and apply the credit at once through the ledger posting (as
    tests/fixtures.py does), so transfers from them complete."""
    from db.core.config import get_settings
    from db.ledger.posting import apply_transaction
    from db.session import unit_of_work
    from db.transactions.service import MoneyMovement, submit

    settings = get_settings()
    for start in range(0, len(account_ids), 50):
        with unit_of_work() as uow:
            for account_id in account_ids[start : start + 50]:
                credit = MoneyMovement(type="credit", amount=amount, currency="USD", account_id=account_id)
                tx = submit(uow.session, finance, credit, idempotency_key=None, settings=settings).record
                outcome = apply_transaction(uow.session, tx.id)
                if outcome.status != "completed":
                    raise RuntimeError(f"funding {account_id} did not complete: {outcome}")


@dataclass
class Population:
    customers: list[Customer]
    finance: Customer
    merchant: uuid.UUID  # the hot scenario's one credited account (owned by its own user)

    @property
    def all_accounts(self) -> list[uuid.UUID]:
        return [a for c in self.customers for a in c.accounts]


def population(n_users: int, accounts_per_user: int) -> Population:
    """Customers each owning funded accounts, a finance user and a merchant account."""
    finance = users(1, role="finance")[0]
    customers = users(n_users + 1)
    merchant_owner = customers.pop()
    for customer in customers:
        customer.accounts = accounts(customer.principal, accounts_per_user)
    fund(
        Principal(id=finance.id, role="finance", username=finance.username),
        [a for c in customers for a in c.accounts],
    )
    merchant_owner.accounts = accounts(merchant_owner.principal, 1)
    return Population(customers, finance, merchant_owner.accounts[0])


def backlog(pop: Population, count: int, *, hot: bool = False, seed: int = 7) -> list[uuid.UUID]:
    """`count` pending transfers between random accounts, recorded by the real service
    and enqueued after commit exactly as the API does (`uow.enqueue`), with no worker
    running yet."""
    import random

    from db.core.config import get_settings
    from db.session import unit_of_work
    from db.transactions.service import MoneyMovement, submit
    from workers.transactions import wake_up_for_new_row

    rng = random.Random(seed)
    settings = get_settings()
    targets = pop.all_accounts
    ids: list[uuid.UUID] = []
    while len(ids) < count:
        with unit_of_work() as uow:
            for _ in range(min(500, count - len(ids))):
                customer = rng.choice(pop.customers)
                source = rng.choice(customer.accounts)
                target = pop.merchant if hot else rng.choice(targets)
                while target == source:
                    target = rng.choice(targets)
                movement = MoneyMovement(
                    type="transfer",
                    amount=f"{rng.randint(0, 9)}.{rng.randint(1, 99):02d}",
                    currency="USD",
                    from_account_id=source,
                    to_account_id=target,
                )
                tx = submit(
                    uow.session,
                    customer.principal,
                    movement,
                    idempotency_key=uuid.uuid4().hex,
                    settings=settings,
                ).record
                uow.enqueue(wake_up_for_new_row, transaction_id=str(tx.id))
                ids.append(tx.id)
    return ids


# --- over HTTP ------------------------------------------------------------------------


def http(
    base_url: str, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url + path, data=data, method=method)  # noqa: S310 - local
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - local
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def log_in(base_url: str, people: list[Customer]) -> None:
    """An access token for each, through POST /auth/login (on 4 threads: scrypt)."""

    def one(person: Customer) -> None:
        status, body = http(
            base_url, "POST", "/api/v1/auth/login", {"username": person.username, "password": person.password}
        )
        if status != 200:
            raise RuntimeError(f"login of {person.username} failed: HTTP {status} {body}")
        person.token = body["access_token"]

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, people))


def scheduled_transfer(base_url: str, customer: Customer, target: uuid.UUID) -> str:
    """A transfer due tomorrow: `scheduled`, so a long-poll on it waits its full time."""
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    status, body = http(
        base_url,
        "POST",
        "/api/v1/transactions/transfer",
        {
            "from_account_id": str(customer.accounts[0]),
            "to_account_id": str(target),
            "amount": "1.00",
            "currency": "USD",
            "scheduled_for": tomorrow,
        },
        customer.token,
    )
    if status != 202 or body.get("status") != "scheduled":
        raise RuntimeError(f"scheduled transfer refused: HTTP {status} {body}")
    return str(body["id"])


def wait_until_ready(base_url: str, customer: Customer, target: uuid.UUID, timeout: float = 60) -> None:
    """One transfer through the whole stack, to completion: API, Redis, a worker."""
    status, body = http(
        base_url,
        "POST",
        "/api/v1/transactions/transfer",
        {
            "from_account_id": str(customer.accounts[0]),
            "to_account_id": str(target),
            "amount": "0.01",
            "currency": "USD",
        },
        customer.token,
    )
    if status != 202:
        raise RuntimeError(f"probe transfer refused: HTTP {status} {body}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = http(
            base_url, "GET", f"/api/v1/transactions/{body['id']}?wait=5", None, customer.token
        )
        if status == 200 and body["status"] == "completed":
            return
        if status != 200 or body["status"] not in ("pending",):
            raise RuntimeError(f"probe transfer ended {body}")
    raise RuntimeError(f"the stack did not complete a probe transfer within {timeout:.0f} s")
