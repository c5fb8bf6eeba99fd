"""Batch lines leave accounts like transfers do, so they obey the same outgoing limits,
decided under the chunk's account locks with the chunk's own sends counted."""

from __future__ import annotations

from sqlalchemy import select

from db.models import Transaction
from db.session import unit_of_work
from tests.fixtures.batches import csv_bytes, upload, wait_batch
from tests.fixtures.http import set_limits
from tests.fixtures.ledger import balance


def test_batch_lines_over_the_daily_limit_fail_limit_exceeded(client, make, worker):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    assert set_limits(client, finance, a, daily_outgoing_limit="25.00").status_code == 200

    lines = [f"{a},{b},10.00,USD,r-{n}" for n in range(4)]
    response = upload(client, finance, csv_bytes(*lines))
    assert response.status_code == 202, response.json
    done = wait_batch(client, finance, response.json["id"])

    assert done["counts"]["completed"] == 2 and done["counts"]["failed"] == 2
    with unit_of_work() as uow:
        codes = list(
            uow.session.scalars(
                select(Transaction.failure_code)
                .where(Transaction.batch_id == response.json["id"])
                .order_by(Transaction.batch_line)
            )
        )
    assert codes == [None, None, "limit_exceeded", "limit_exceeded"]  # decided in file order
    assert balance(a) == "80.00" and balance(b) == "20.00"


def test_batch_line_over_the_per_transaction_limit_fails(client, make, worker):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    assert set_limits(client, finance, a, max_per_transaction="5.00").status_code == 200
    response = upload(client, finance, csv_bytes(f"{a},{b},5.00,USD,ok", f"{a},{b},5.01,USD,over"))
    done = wait_batch(client, finance, response.json["id"])
    assert done["counts"]["completed"] == 1 and done["counts"]["failed"] == 1
    assert balance(b) == "5.00"
