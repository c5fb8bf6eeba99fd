"""GET /analytics/daily and /analytics/accounts/{id} agree with a direct count of the
transactions and ledger entries after activity through the real API, broker, worker
and posting engine; who may read them; what is refused."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from db.core.money import format_minor
from tests.fixtures.analytics import expected_account, expected_daily, rollup_problems
from tests.fixtures.batches import csv_bytes, upload, wait_batch
from tests.fixtures.builders import pending_transfer
from tests.fixtures.http import accepted, assert_error, credit, debit, transfer
from tests.fixtures.ledger import apply_now, ledger_problems, sql, wait_final

API = "/api/v1/analytics"


def _today() -> date:
    return datetime.now(UTC).date()


def daily(client, user, since: date, until: date, **extra):
    query = {"from": since.isoformat(), "to": until.isoformat(), **extra}
    return client.get(f"{API}/daily", query_string=query, headers=user.headers)


def account_figures(client, user, account_id, since: date, until: date):
    query = {"from": since.isoformat(), "to": until.isoformat()}
    return client.get(f"{API}/accounts/{account_id}", query_string=query, headers=user.headers)


def assert_account_agrees(client, user, account_id, currency: str, since: date, until: date) -> None:
    response = account_figures(client, user, account_id, since, until)
    assert response.status_code == 200, response.json
    incoming, outgoing, count = expected_account(account_id, since, until)
    assert response.json == {
        "account_id": str(account_id),
        "currency": currency,
        "from": since.isoformat(),
        "to": until.isoformat(),
        "incoming": format_minor(incoming, currency),
        "outgoing": format_minor(outgoing, currency),
        "count": count,
    }


def test_figures_agree_with_a_direct_count_after_random_activity(client, make, worker):
    rng = random.Random(14)
    finance = make.user("finance")
    people = [make.user() for _ in range(3)]
    usd = [make.account(p, balance="40.00") for p in people]
    eur = [make.account(p, currency="EUR", balance="9.00") for p in people]
    jpy = make.account(people[0], currency="JPY", balance="500")
    owners = dict(zip(usd + eur, people + people, strict=True))
    sent: list[str] = []
    for _ in range(45):
        kind = rng.choice(["transfer", "transfer", "debit", "credit", "big"])
        pool, currency = rng.choice([(usd, "USD"), (usd, "USD"), (eur, "EUR")])
        source, target = rng.sample(pool, 2)
        amount = f"{rng.randint(1, 600) / 100:.2f}"
        if kind == "transfer":
            response = transfer(client, owners[source], source, target, amount, currency)
        elif kind == "big":  # more than anyone holds: failed by the worker
            response = transfer(client, owners[source], source, target, "900.00", currency)
        elif kind == "debit":
            response = debit(client, owners[source], source, amount, currency)
        else:
            response = credit(client, finance, target, amount, currency)
        sent.append(accepted(response))
    sent.append(accepted(debit(client, people[0], jpy, "120", "JPY")))
    # Cancels racing the worker: either wins, the figures must follow.
    for tx_id in rng.sample(sent, 6):
        client.post(f"/api/v1/transactions/{tx_id}/cancel", headers=finance.headers)
    statuses = wait_final(sent)
    completed = [tx_id for tx_id, status in statuses.items() if status == "completed"]
    for tx_id in rng.sample(completed, 4):
        response = client.post(f"/api/v1/transactions/{tx_id}/reverse", headers=finance.headers)
        assert response.status_code in (202, 422), response.json  # 422: the money was spent
        if response.status_code == 202:
            sent.append(response.json["id"])
    batch = upload(
        client,
        finance,
        csv_bytes(
            f"{usd[0]},{usd[1]},1.00,USD,a",
            f"{usd[1]},{usd[2]},999.00,USD,b",  # failed: insufficient funds
            f",{usd[2]},3.00,USD,c",
            f"{usd[2]},,0.50,USD,d",
        ),
    )
    assert batch.status_code == 202, batch.json
    assert wait_batch(client, finance, batch.json["id"])["status"] == "completed_with_errors"
    wait_final(sent)
    assert sql("SELECT count(*) FROM transactions WHERE status = 'failed'")[0][0] > 0

    today = _today()
    week = today - timedelta(days=6)
    response = daily(client, finance, week, today)
    assert response.status_code == 200, response.json
    assert response.json == {"items": expected_daily(week, today)}
    assert {item["currency"] for item in response.json["items"]} == {"USD", "EUR", "JPY"}
    assert daily(client, finance, week, today, currency="EUR").json == {
        "items": expected_daily(week, today, "EUR")
    }
    for account_id in [*usd, *eur]:
        currency = "USD" if account_id in usd else "EUR"
        assert_account_agrees(client, finance, account_id, currency, week, today)
    assert_account_agrees(client, people[0], jpy, "JPY", week, today)
    assert ledger_problems() == []


def test_a_transaction_counts_on_the_day_it_was_created_even_when_it_completes_later(client, make):
    finance, alice = make.user("finance"), make.user()
    source = make.account(alice, balance="10.00")
    target = make.account(alice)
    tx_id = pending_transfer(alice, source, target, "2.50")
    # Recorded yesterday (the clock cannot be moved: the row is), applied today.
    sql("UPDATE transactions SET created_at = now() - interval '1 day' WHERE id = :id", id=tx_id)
    yesterday, today = _today() - timedelta(days=1), _today()
    before = daily(client, finance, yesterday, yesterday).json["items"]
    assert [(i["count"], i["completed"], i["volume"]) for i in before] == [(1, 0, "0.00")]
    assert apply_now(tx_id) == "completed"

    after = daily(client, finance, yesterday, today).json["items"]
    assert after == expected_daily(yesterday, today)
    assert [(i["date"], i["count"], i["completed"], i["volume"]) for i in after] == [
        (yesterday.isoformat(), 1, 1, "2.50"),
        (today.isoformat(), 1, 1, "10.00"),  # the funding credit
    ]
    # The money moved today: the account figures are by the day of the entry.
    assert account_figures(client, finance, target, yesterday, yesterday).json["incoming"] == "0.00"
    assert account_figures(client, finance, target, today, today).json["incoming"] == "2.50"
    assert rollup_problems() == []


def test_customers_see_their_own_accounts_only_and_no_daily_figures(client, make):
    finance, admin, alice, bob = make.user("finance"), make.user("admin"), make.user(), make.user()
    mine = make.account(alice, balance="5.00")
    today = _today()
    assert account_figures(client, alice, mine, today, today).json["incoming"] == "5.00"
    assert account_figures(client, finance, mine, today, today).json["count"] == 1
    assert account_figures(client, admin, mine, today, today).status_code == 200
    assert_error(account_figures(client, bob, mine, today, today), 404, "not_found")
    assert_error(account_figures(client, bob, uuid.uuid4(), today, today), 404, "not_found")
    assert_error(account_figures(client, finance, uuid.uuid4(), today, today), 404, "not_found")
    assert_error(daily(client, alice, today, today), 403, "forbidden")
    assert daily(client, admin, today, today).status_code == 200


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2026-13-01", "to": "2026-12-31"}, "from"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02"}, "from"),
        ({"from": "2026-01-01", "to": "yesterday"}, "to"),
        ({"from": "2999-01-01"}, "from"),  # after today, the default `to`
        ({"from": "2026-02-02", "to": "2026-02-01"}, "from"),
        ({"from": "2025-01-01", "to": "2026-01-02"}, "to"),  # 367 days
        ({"from": "2026-01-01", "to": "2026-01-31", "currency": "XYZ"}, "currency"),
        ({"from": "2026-01-01", "to": "2026-01-31", "currency": "usd"}, "currency"),
    ],
)
def test_bad_ranges_and_currencies_are_422(client, make, query, field):
    finance = make.user("finance")
    account = make.account(finance)
    response = client.get(f"{API}/daily", query_string=query, headers=finance.headers)
    assert field in assert_error(response, 422, "validation_error")["details"], response.json
    if "currency" not in query:
        response = client.get(f"{API}/accounts/{account}", query_string=query, headers=finance.headers)
        assert field in assert_error(response, 422, "validation_error")["details"], response.json


def test_the_range_defaults_to_the_30_days_up_to_today(client, make):
    finance = make.user("finance")
    account = make.account(finance, balance="3.00")
    today = _today()
    body = client.get(f"{API}/accounts/{account}", headers=finance.headers).json
    assert (body["from"], body["to"], body["incoming"]) == (
        (today - timedelta(days=29)).isoformat(),
        today.isoformat(),
        "3.00",
    )
    query = {"from": (today - timedelta(days=400)).isoformat()}  # to = today: 401 days
    assert_error(
        client.get(f"{API}/daily", query_string=query, headers=finance.headers), 422, "validation_error"
    )
    assert client.get(f"{API}/daily", headers=finance.headers).json == {
        "items": expected_daily(today - timedelta(days=29), today)
    }


def test_a_full_leap_year_is_the_longest_range(client, make):
    finance = make.user("finance")
    account = make.account(finance)
    year = {"from": "2028-01-01", "to": "2028-12-31"}
    assert client.get(f"{API}/daily", query_string=year, headers=finance.headers).json == {"items": []}
    response = client.get(f"{API}/accounts/{account}", query_string=year, headers=finance.headers)
    assert (response.status_code, response.json["count"], response.json["incoming"]) == (200, 0, "0.00")
