"""Read endpoints: transaction history (cursor pagination, newest first, capped page
size, ownership), current balances, the account list, and the ?wait long-poll."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.fixtures.builders import bulk_pending, pending_many, pending_transfer
from tests.fixtures.http import all_pages, assert_error, transfer
from tests.fixtures.ledger import apply_now

HISTORY = "/api/v1/transactions/history"


def _pending_many(user, source, target, count: int, amount: str = "0.01") -> list[str]:
    """`count` pending transfers in one database transaction (fast), oldest first."""
    return pending_many(user, count, "transfer", amount, from_account_id=source, to_account_id=target)


def _all_pages(client, user, query: str = "limit=50") -> tuple[list[str], int]:
    items, pages = all_pages(client, user, HISTORY, query)
    return [item["id"] for item in items], pages


@pytest.fixture
def busy(make, request):
    """alice pays bob N times (23 unless the test asks for more; plus her funding
    credit); carol has her own traffic."""
    count = getattr(request, "param", 23)
    alice, bob, carol = make.user(), make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    c, c2 = make.account(carol, balance="10.00"), make.account(carol)
    transfers = _pending_many(alice, a, b, count) if count < 50 else bulk_pending(alice, a, b, count)
    carols = _pending_many(carol, c, c2, 3)
    return {"alice": alice, "bob": bob, "carol": carol, "a": a, "transfers": transfers, "carols": carols}


@pytest.mark.parametrize("busy", [205], indirect=True)
def test_history_page_size_is_capped_at_the_configured_maximum(client, app, busy):
    assert app.config["LEDGERQ_SETTINGS"].page_size_max == 200

    first = client.get(f"{HISTORY}?limit=1000", headers=busy["alice"].headers)

    assert first.status_code == 200
    assert len(first.json["items"]) == 200
    assert first.json["next_cursor"]
    rest = client.get(
        f"{HISTORY}?limit=1000&cursor={first.json['next_cursor']}", headers=busy["alice"].headers
    )
    assert len(rest.json["items"]) == 6  # 5 transfers and the funding credit
    assert rest.json["next_cursor"] is None


def test_history_is_newest_first_and_cursor_pages_have_no_gaps_or_repeats(client, busy):
    alice = busy["alice"]

    ids, pages = _all_pages(client, alice, "limit=5")

    assert pages == 5
    assert len(ids) == len(set(ids)) == 24
    assert ids[:23] == busy["transfers"][::-1]  # newest first
    credit = client.get(f"/api/v1/transactions/{ids[-1]}", headers=alice.headers).json
    assert credit["type"] == "credit"  # the oldest: alice's funding
    items = client.get(f"{HISTORY}?limit=200", headers=alice.headers).json["items"]
    stamps = [item["created_at"] for item in items]
    assert stamps == sorted(stamps, reverse=True)


def test_customers_see_only_transactions_touching_their_accounts(client, make, busy):
    alice_ids, _ = _all_pages(client, busy["alice"], "limit=200")
    bob_ids, _ = _all_pages(client, busy["bob"], "limit=200")
    carol_ids, _ = _all_pages(client, busy["carol"], "limit=200")
    finance_ids, _ = _all_pages(client, make.user("finance"), "limit=200")

    assert set(bob_ids) == set(busy["transfers"])  # incoming, but not alice's funding
    assert not set(carol_ids) & set(alice_ids)
    assert set(busy["carols"]) <= set(carol_ids) and len(carol_ids) == 4
    assert set(finance_ids) == set(alice_ids) | set(carol_ids)
    assert_error(
        client.get(f"{HISTORY}?account_id={busy['a']}", headers=busy["carol"].headers), 404, "not_found"
    )


def test_history_filters_and_bad_paging_arguments(client, busy):
    alice = busy["alice"]
    credits = client.get(f"{HISTORY}?type=credit", headers=alice.headers).json["items"]
    assert [c["type"] for c in credits] == ["credit"]
    pending = client.get(f"{HISTORY}?status=pending&limit=200", headers=alice.headers).json["items"]
    assert len(pending) == 23 and {p["status"] for p in pending} == {"pending"}
    assert_error(client.get(f"{HISTORY}?cursor=not-a-cursor", headers=alice.headers), 422, "validation_error")
    assert_error(client.get(f"{HISTORY}?limit=0", headers=alice.headers), 422, "validation_error")
    assert_error(client.get(f"{HISTORY}?status=lost", headers=alice.headers), 422, "validation_error")


def test_current_balance_of_one_account_and_of_every_visible_account(client, make):
    alice, bob = make.user(), make.user()
    a, a_jpy = make.account(alice, balance="100.00"), make.account(alice, "JPY", balance="500")
    b = make.account(bob, balance="7.00")
    pending_transfer(alice, a, b, "30.00")  # not applied yet: only available_balance shows it

    one = client.get(f"/api/v1/balances/current?account_id={a}", headers=alice.headers)

    assert one.status_code == 200
    assert set(one.json) == {"account_id", "currency", "balance", "available_balance", "as_of"}
    assert (one.json["account_id"], one.json["currency"]) == (str(a), "USD")
    assert (one.json["balance"], one.json["available_balance"]) == ("100.00", "70.00")
    assert one.json["as_of"].endswith("+00:00")

    mine = client.get("/api/v1/balances/current", headers=alice.headers)
    assert mine.status_code == 200 and mine.json["next_cursor"] is None
    assert {(i["account_id"], i["balance"], i["available_balance"]) for i in mine.json["items"]} == {
        (str(a), "100.00", "70.00"),
        (str(a_jpy), "500", "500"),
    }
    everything = client.get("/api/v1/balances/current?limit=200", headers=make.user("finance").headers)
    listed = {i["account_id"]: i["balance"] for i in everything.json["items"]}
    assert {str(a), str(a_jpy), str(b)} <= set(listed)
    assert len(listed) == 5  # and the USD and JPY external accounts
    assert sum(int(v.replace(".", "")) for k, v in listed.items() if k in (str(a), str(b))) == 107_00


def test_account_list_shows_own_accounts_and_pages_with_a_cursor(client, make):
    alice, bob = make.user(), make.user()
    mine = {str(make.account(alice, c)) for c in ("USD", "EUR", "JPY")}
    theirs = str(make.account(bob))

    listed = client.get("/api/v1/accounts", headers=alice.headers).json
    assert {a["id"] for a in listed["items"]} == mine
    assert {a["owner_id"] for a in listed["items"]} == {str(alice.id)}
    assert {a["balance"] for a in listed["items"]} == {"0.00", "0"}

    paged, cursor = [], None
    while True:
        url = "/api/v1/accounts?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=alice.headers).json
        paged += [a["id"] for a in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(paged) == 3 and set(paged) == mine

    finance = make.user("finance")
    everyone = client.get("/api/v1/accounts?limit=200", headers=finance.headers).json["items"]
    assert mine | {theirs} <= {a["id"] for a in everyone}
    assert {a["kind"] for a in everyone} == {"user", "system"}
    eur = client.get("/api/v1/accounts?currency=EUR", headers=finance.headers).json["items"]
    assert {a["currency"] for a in eur} == {"EUR"} and len(eur) == 2  # alice's and the external one
    bobs = client.get(f"/api/v1/accounts?owner_id={bob.id}", headers=finance.headers).json["items"]
    assert [a["id"] for a in bobs] == [theirs]
    # A customer's owner_id filter cannot widen the view.
    snoop = client.get(f"/api/v1/accounts?owner_id={bob.id}", headers=alice.headers).json["items"]
    assert {a["id"] for a in snoop} == mine


def test_wait_returns_as_soon_as_the_transaction_is_final(client, make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    tx_id = pending_transfer(alice, a, b, "10.00")
    result = {}

    def long_poll():
        started = time.monotonic()
        result["response"] = client.get(f"/api/v1/transactions/{tx_id}?wait=10", headers=alice.headers)
        result["seconds"] = time.monotonic() - started

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.3)
    assert poller.is_alive()  # still waiting: the transfer is pending
    assert apply_now(tx_id) == "completed"
    poller.join(timeout=10)

    assert result["response"].status_code == 200
    assert result["response"].json["status"] == "completed"
    assert 0.3 <= result["seconds"] < 3


def test_wait_gives_up_after_n_seconds_with_the_current_state(client, make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    tx_id = transfer(client, alice, a, b, "10.00").json["id"]  # no worker: stays pending

    started = time.monotonic()
    response = client.get(f"/api/v1/transactions/{tx_id}?wait=0.4", headers=alice.headers)
    elapsed = time.monotonic() - started

    assert response.status_code == 200 and response.json["status"] == "pending"
    assert 0.4 <= elapsed < 2
    assert_error(
        client.get(f"/api/v1/transactions/{tx_id}?wait=-1", headers=alice.headers), 422, "validation_error"
    )
    unknown = client.get(f"/api/v1/transactions/{uuid.uuid4()}?wait=5", headers=alice.headers)
    assert_error(unknown, 404, "not_found")


def test_a_counterparty_gets_a_reduced_view_and_no_failure_names_a_balance(client, make, worker):
    from tests.fixtures.ledger import wait_final

    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="986.00"), make.account(bob)
    tx = transfer(
        client,
        alice,
        a,
        b,
        amount="999999.00",
        reference="rent flat 3",
        metadata={"note": "private"},
        headers={"Idempotency-Key": "alice-key-1"},
    ).json
    wait_final([tx["id"]])

    mine = client.get(f"/api/v1/transactions/{tx['id']}", headers=alice.headers).json
    assert mine["failure_code"] == "insufficient_funds"
    assert "986" not in mine["failure_message"]  # no balance in a failure message, for anyone
    assert mine["reference"] == "rent flat 3" and mine["idempotency_key"] == "alice-key-1"

    theirs = client.get(f"/api/v1/transactions/{tx['id']}", headers=bob.headers).json
    listed = client.get(HISTORY, query_string={"account_id": str(b)}, headers=bob.headers).json["items"]
    for view in (theirs, listed[0]):
        assert view["id"] == tx["id"] and view["status"] == "failed" and view["amount"] == "999999.00"
        for private in ("failure_code", "failure_message", "reference", "metadata", "idempotency_key"):
            assert view[private] is None, (private, view)
    staff = client.get(f"/api/v1/transactions/{tx['id']}", headers=make.user("finance").headers).json
    assert staff["reference"] == "rent flat 3" and staff["failure_code"] == "insufficient_funds"
