"""available_balance = balance - pending outgoing, read from one snapshot: a transfer
that completes between two reads must never show its money twice."""

from __future__ import annotations

from sqlalchemy import event

from db.accounts import repository as accounts_repo
from db.accounts.service import view
from db.session import get_engine, unit_of_work
from tests.fixtures.builders import pending_transfer
from tests.fixtures.ledger import apply_now


def test_a_transfer_completing_between_the_reads_is_counted_once(make):
    alice = make.user()
    a, b = make.account(alice, balance="100.00"), make.account(make.user())
    tx_id = pending_transfer(alice, a, b, "100.00")
    engine, applied = get_engine(), []

    def complete_it_first(conn, cursor, statement, parameters, context, executemany):
        # Just before the statement that sums the pending money runs, the worker commits
        # the transfer from another connection: the race a poll during a send-everything hits.
        if "sum(" in statement.lower() and "pending" in str(parameters) + statement and not applied:
            applied.append(apply_now(tx_id))

    event.listen(engine, "before_cursor_execute", complete_it_first)
    try:
        with unit_of_work() as uow:
            shown = view(uow.session, accounts_repo.get(uow.session, a))
    finally:
        event.remove(engine, "before_cursor_execute", complete_it_first)
    assert applied == ["completed"]
    assert shown.available_minor == 0, shown  # 100.00 - 100.00 pending, or 0.00 - nothing pending
