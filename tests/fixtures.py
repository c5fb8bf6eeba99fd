"""Fixtures and builders shared by every test module."""

from __future__ import annotations

import time
import uuid

import pytest

from db.core.config import get_settings
from db.core.principal import Principal
from db.models import FINAL_STATUSES, Transaction


def flush_namespace() -> None:
    from workers import broker

    namespace = get_settings().redis_namespace
    keys = list(broker.client.scan_iter(match=f"{namespace}*", count=1000))
    if keys:
        broker.client.delete(*keys)


@pytest.fixture(scope="session")
def app():
    from api import create_app

    application = create_app()
    application.config["TESTING"] = True
    return application


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def worker():
    """A real Dramatiq worker (threads in this process) consuming the real Redis broker."""
    from dramatiq import Worker

    from workers import broker

    flush_namespace()
    instance = Worker(broker, worker_threads=4, worker_timeout=100)
    instance.start()
    yield instance
    instance.stop(timeout=10_000)


class Builders:
    """Rows made through the real services (no shortcuts around the ledger)."""

    def __init__(self, app):
        self.app = app
        self._finance: Principal | None = None

    def user(
        self, role: str = "customer", username: str | None = None, password: str = "correct horse battery"
    ):
        from api.extensions.auth import issue_access_token
        from db.auth.users import create_user
        from db.session import unit_of_work

        username = username or f"{role}-{uuid.uuid4().hex[:8]}"
        with unit_of_work() as uow:
            user = create_user(
                uow.session, username=username, email=f"{username}@example.com", password=password, role=role
            )
        token, _ = issue_access_token(get_settings(), user.id, role)
        return User(user.id, role, username, password, {"Authorization": f"Bearer {token}"})

    def account(self, owner, currency: str = "USD", balance: str | None = None) -> uuid.UUID:
        from db.accounts.service import open_account
        from db.session import unit_of_work

        with unit_of_work() as uow:
            account = open_account(uow.session, owner.principal, currency=currency, name=None, owner_id=None)
        if balance:
            self.fund(account.id, balance, currency)
        return account.id

    def fund(self, account_id: uuid.UUID, amount: str, currency: str = "USD") -> None:
        """A credit recorded and applied synchronously through the ledger posting."""
        from db.ledger.posting import apply_transaction
        from db.session import unit_of_work
        from db.transactions.service import MoneyMovement, submit

        if self._finance is None:
            self._finance = self.user("finance").principal
        with unit_of_work() as uow:
            submitted = submit(
                uow.session,
                self._finance,
                MoneyMovement(type="credit", amount=amount, currency=currency, account_id=account_id),
                idempotency_key=None,
                settings=get_settings(),
            )
            outcome = apply_transaction(uow.session, submitted.transaction.id)
        assert outcome.status == "completed", outcome


class User:
    def __init__(self, id, role, username, password, headers):
        self.id, self.role, self.username, self.password, self.headers = id, role, username, password, headers

    @property
    def principal(self) -> Principal:
        return Principal(id=self.id, role=self.role, username=self.username)


@pytest.fixture
def make(app) -> Builders:
    return Builders(app)


def transaction(tx_id) -> Transaction:
    from db.session import unit_of_work

    with unit_of_work() as uow:
        tx = uow.session.get(Transaction, uuid.UUID(str(tx_id)))
        assert tx is not None
        uow.session.expunge(tx)
        return tx


def wait_final(tx_ids, timeout: float = 20.0) -> dict[str, str]:
    """Poll PostgreSQL until every transaction is final; return id -> status."""
    from sqlalchemy import select

    from db.session import unit_of_work

    ids = [uuid.UUID(str(i)) for i in tx_ids]
    deadline = time.monotonic() + timeout
    while True:
        with unit_of_work() as uow:
            rows = dict(
                uow.session.execute(
                    select(Transaction.id, Transaction.status).where(Transaction.id.in_(ids))
                ).all()
            )
        if all(rows.get(i) in FINAL_STATUSES for i in ids) or time.monotonic() > deadline:
            return {str(k): v for k, v in rows.items()}
        time.sleep(0.05)


def balance(account_id) -> str:
    from db.core.money import format_minor
    from db.models import Balance
    from db.session import unit_of_work

    with unit_of_work() as uow:
        row = uow.session.get(Balance, uuid.UUID(str(account_id)))
        return format_minor(row.balance_minor, row.currency)
