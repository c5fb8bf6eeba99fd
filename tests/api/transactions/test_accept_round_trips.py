"""The accept path's database budget (api/transactions/routes.py `_accept`): a transfer
is recorded by one read (both accounts) and one write (row, audit row and event in one
statement, db/transactions/recording.py) with no BEGIN or COMMIT, and the write is still
one database transaction."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import psycopg

from db import session as db_session
from db.auth.auth_states import states_for
from db.core.config import get_settings
from tests.fixtures.http import API, accepted, credit, transfer
from tests.fixtures.ledger import sql
from tests.fixtures.scheduling import wait_until


@contextmanager
def statements(texts: list[str] | None = None):
    """The SQL this thread sent to PostgreSQL meanwhile (its first word, and whether it
    ran in autocommit; the whole text into `texts`), counted at psycopg's cursor: both
    SQLAlchemy's statements and `db.core.sql.DriverQuery`'s go through it."""
    sent: list[tuple[str, bool]] = []
    execute = psycopg.Cursor.execute
    thread = threading.get_ident()

    def counted(cursor, query, *args, **kwargs):
        if threading.get_ident() == thread:
            statement = query.decode() if isinstance(query, bytes) else str(query)
            sent.append((statement.split()[0].upper(), cursor.connection.autocommit))
            if texts is not None:
                texts.append(statement)
        return execute(cursor, query, *args, **kwargs)

    psycopg.Cursor.execute = counted  # type: ignore[method-assign]
    # The pool's checkout ping (db/session.py) of a connection idle for a second is no
    # statement of the request's: never due while counting.
    ping_after, db_session.PING_WHEN_IDLE_FOR_S = db_session.PING_WHEN_IDLE_FOR_S, float("inf")
    try:
        yield sent
    finally:
        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
        db_session.PING_WHEN_IDLE_FOR_S = ping_after


def test_a_transfer_costs_one_read_and_one_write_outside_an_explicit_transaction(client, make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    transfer(client, alice, a, b, "1.00")  # starts the auth cache's listener
    listener = states_for(get_settings().database_url).listener
    assert wait_until(lambda: listener.is_listening)
    transfer(client, alice, a, b, "1.00")  # the auth cache holds alice from here on
    with statements() as sent:
        tx_id = accepted(transfer(client, alice, a, b, "2.00"))
    assert [kind for kind, _ in sent] == ["SELECT", "WITH"], sent
    assert all(autocommit for _, autocommit in sent), "no BEGIN/COMMIT round trips"
    (row,) = sql(
        "SELECT t.xmin::text, a.xmin::text, e.xid::text FROM transactions t "
        "JOIN audit_logs a ON a.entity_id = t.id::text JOIN events e ON e.data->>'id' = t.id::text "
        "WHERE t.id = :id",
        id=tx_id,
    )
    assert row[0] == row[1] and int(row[2]) % 2**32 == int(row[0]), "one transaction wrote all three"


def test_a_credit_keeps_its_transaction(client, make):
    """A credit may create its currency's `external` account first (an account row, then
    its balance row): autocommit could commit one without the other."""
    alice, finance = make.user(), make.user("finance")
    a = make.account(alice, currency="EUR")
    with statements() as sent:
        accepted(credit(client, finance, a, "5.00", currency="EUR"))
    assert sent and not any(autocommit for _, autocommit in sent), sent


def test_reads_run_outside_an_explicit_transaction_and_a_poll_is_one_statement(client, make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    tx_id = accepted(transfer(client, alice, a, b, "1.00"))
    listener = states_for(get_settings().database_url).listener
    assert wait_until(lambda: listener.is_listening)
    client.get(f"{API}/transactions/{tx_id}", headers=bob.headers)  # bob's auth state is cached from here on
    with statements() as polled:
        assert client.get(f"{API}/transactions/{tx_id}", headers=bob.headers).status_code == 200
    assert polled == [("SELECT", True)], "a poll is one statement: the row, its parties, its reversal"
    with statements() as sent:
        assert client.get(f"{API}/balances/current?account_id={b}", headers=bob.headers).status_code == 200
    assert sent == [("SELECT", True)], "a balance read is one statement: the account and its figures"


def test_the_polled_reads_state_their_partial_index_predicates_as_constants(client, make):
    """A predicate a partial index is defined on must reach PostgreSQL as a constant:
    from a statement's 5th execution psycopg prepares it, and a generic plan cannot
    prove `status = $1` implies the index's `status = 'pending'` (db/core/sql.py)."""
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    tx_id = accepted(transfer(client, alice, a, b, "1.00"))
    texts: list[str] = []
    with statements(texts):
        client.get(f"{API}/transactions/{tx_id}", headers=alice.headers)
        client.get(f"{API}/balances/current?account_id={a}", headers=alice.headers)
    joined = "\n".join(texts)
    assert "status NOT IN ('failed', 'cancelled')" in joined  # uq_transactions_reverses
    assert "transactions.status = 'pending'" in joined  # ix_transactions_pending_from
