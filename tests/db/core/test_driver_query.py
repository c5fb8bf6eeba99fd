"""`DriverQuery` answers what SQLAlchemy's own execution of the same statement answers
(for every kind of transaction the polled read returns, an exchange's Decimal rate
included, a balance read, a transfer's accounts and its recorded row), and refuses
statements it cannot answer faithfully."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Numeric, Uuid, bindparam, column, insert, literal, select, table, type_coerce
from sqlalchemy.types import TypeDecorator

from db.accounts import repository as accounts_repo
from db.core.sql import DriverQuery
from db.models import Transaction
from db.session import unit_of_work
from db.transactions import repository as transactions_repo
from tests.api.transactions.test_one_rendering import _every_kind


def test_it_answers_what_sqlalchemy_answers_for_every_kind_of_transaction_and_a_balance(client, make):
    _, ids = _every_kind(client, make)
    with unit_of_work() as uow:
        for kind, tx_id in ids.items():
            ours = transactions_repo._SHOWN.one_or_none(uow.session, {"transaction_id": tx_id})
            theirs = uow.session.execute(transactions_repo._SHOWN.statement, {"transaction_id": tx_id}).one()
            assert tuple(ours) == tuple(theirs), kind
            assert ours._fields == tuple(theirs._fields), kind
            assert [type(value) for value in ours] == [type(value) for value in theirs], kind
        account_id = ours.from_account_id
        ours = accounts_repo._ACCOUNT_AND_FIGURES.one_or_none(uow.session, {"id": account_id})
        theirs = uow.session.execute(accounts_repo._ACCOUNT_AND_FIGURES.statement, {"id": account_id}).one()
        assert tuple(ours) == tuple(theirs) and ours.pending_minor == theirs.pending_minor
        both = {"ids": [ours.id, ours.owner_id, uuid.uuid4()]}  # one account, two ids that are none
        ours = accounts_repo._FACTS.all(uow.session, both)
        theirs = uow.session.execute(accounts_repo._FACTS.statement, both).all()
        assert [tuple(row) for row in ours] == [tuple(row) for row in theirs] and len(ours) == 1
        assert transactions_repo._SHOWN.one_or_none(uow.session, {"transaction_id": uuid.uuid4()}) is None


class _Upper(TypeDecorator):
    impl = Uuid
    cache_ok = True

    def process_result_value(self, value, dialect):
        return str(value).upper()


def test_it_refuses_what_it_cannot_run_as_sqlalchemy_would():
    things = table("things", column("id"), column("name"))
    with pytest.raises(ValueError, match="unique column labels"):
        DriverQuery(select(things.c.id, literal(1)))
    with pytest.raises(ValueError, match="unique column labels"):
        DriverQuery(select(things.c.id, things.c.name.label("id")))
    with pytest.raises(ValueError, match="result processing"):
        DriverQuery(select(type_coerce(things.c.id, _Upper).label("id")))
    with pytest.raises(ValueError, match="result processing"):  # SQLAlchemy makes these floats
        DriverQuery(select(type_coerce(things.c.id, Numeric(asdecimal=False)).label("id")))
    with pytest.raises(ValueError, match="expands at execution"):
        DriverQuery(select(things.c.id).where(things.c.id.in_(bindparam("ids", expanding=True))))
    with pytest.raises(ValueError, match="Python-side column defaults"):
        # Transaction.id's default is uuid.uuid4, computed by SQLAlchemy when not given.
        DriverQuery(select(insert(Transaction).values(type="transfer").returning(Transaction.id).cte("new")))


def test_a_transfer_recorded_through_it_is_what_the_orm_loads_back(make):
    """record_new's row (its one WITH statement, with JSONB and array parameters)."""
    from db.core.config import get_settings
    from db.transactions.service import MoneyMovement, submit

    alice = make.user()
    a, b = make.account(alice, balance="10.00"), make.account(make.user())
    movement = MoneyMovement(
        type="transfer",
        amount="1.25",
        currency="USD",
        from_account_id=a,
        to_account_id=b,
        reference="ref",
        metadata={"k": [1, "two", None]},
    )
    keys = [prop.key for prop in Transaction.__mapper__.column_attrs]
    with unit_of_work() as uow:
        recorded = submit(
            uow.session, alice.principal, movement, idempotency_key="k-1", settings=get_settings()
        ).record
        ours = {key: getattr(recorded, key) for key in keys}
    with unit_of_work() as uow:
        loaded = uow.session.get(Transaction, ours["id"])
        theirs = {key: getattr(loaded, key) for key in keys}
    assert ours == theirs
    assert {key: type(value) for key, value in ours.items()} == {
        key: type(value) for key, value in theirs.items()
    }
    assert ours["metadata_"] == {"k": [1, "two", None]} and ours["created_at"] is not None


def test_a_lost_connection_is_sqlalchemys_error_and_leaves_the_pool(make):
    """As through SQLAlchemy: OperationalError (the API's 503), the connection invalidated."""
    from sqlalchemy import exc as sa_exc

    from db.core.config import get_settings
    from db.session import session_factory
    from tests.fixtures.ledger import sql

    with session_factory(get_settings())() as session:  # closed, not committed, at the end
        connection = session.connection()
        dbapi = connection.connection.driver_connection
        sql("SELECT pg_terminate_backend(:pid)", pid=dbapi.info.backend_pid)
        with pytest.raises(sa_exc.OperationalError) as raised:
            transactions_repo._SHOWN.one_or_none(session, {"transaction_id": uuid.uuid4()})
        assert raised.value.connection_invalidated
        assert connection.invalidated
