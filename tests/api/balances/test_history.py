"""Balance history: the balance after each ledger entry (oldest first, cursor pages,
`from`/`to` range), the balance at an instant, currency rendering and ownership."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from urllib.parse import quote

import pytest

from tests.fixtures.builders import bulk_pending, pending_transfer
from tests.fixtures.http import all_pages, assert_error
from tests.fixtures.ledger import apply_now

HISTORICAL = "/api/v1/balances/historical"
AT_TIME = "/api/v1/balances/at-time"


@pytest.fixture
def story(make):
    """alice: +100.00, +25.50, -40.00 to bob, +0.01 (four entries, four DB transactions)."""
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    make.fund(a, "25.50")
    out = pending_transfer(alice, a, b, "40.00")
    assert apply_now(out) == "completed"
    make.fund(a, "0.01")
    return {"alice": alice, "bob": bob, "a": a, "b": b, "out": out}


def _all(client, user, query: str) -> tuple[list[dict], int]:
    return all_pages(client, user, HISTORICAL, query)


def _q(stamp: str) -> str:
    return quote(stamp, safe="")


def test_history_is_oldest_first_with_the_balance_after_each_entry(client, story):
    alice, a = story["alice"], story["a"]

    response = client.get(f"{HISTORICAL}?account_id={a}", headers=alice.headers)

    assert response.status_code == 200
    assert set(response.json) == {"items", "next_cursor"} and response.json["next_cursor"] is None
    items = response.json["items"]
    assert [set(i) for i in items] == [{"at", "balance", "transaction_id", "amount"}] * 4
    assert [(i["amount"], i["balance"]) for i in items] == [
        ("100.00", "100.00"),
        ("25.50", "125.50"),
        ("-40.00", "85.50"),
        ("0.01", "85.51"),
    ]
    assert items[2]["transaction_id"] == story["out"]
    stamps = [datetime.fromisoformat(i["at"]) for i in items]
    assert stamps == sorted(stamps) and all(s.utcoffset() is not None for s in stamps)
    # The other side of the transfer has its own history.
    bobs = client.get(f"{HISTORICAL}?account_id={story['b']}", headers=story["bob"].headers).json["items"]
    assert [(i["amount"], i["balance"], i["transaction_id"]) for i in bobs] == [
        ("40.00", "40.00", story["out"])
    ]


def test_history_pages_with_a_cursor_without_gaps_or_repeats(client, story):
    alice, a = story["alice"], story["a"]
    everything = client.get(f"{HISTORICAL}?account_id={a}", headers=alice.headers).json["items"]

    items, pages = _all(client, alice, f"account_id={a}&limit=3")
    assert pages == 2 and items == everything

    items, pages = _all(client, alice, f"account_id={a}&limit=1")
    assert pages == 4 and items == everything

    exact = client.get(f"{HISTORICAL}?account_id={a}&limit=4", headers=alice.headers).json
    assert len(exact["items"]) == 4 and exact["next_cursor"] is None


def test_history_range_filters_are_inclusive(client, story):
    alice, a = story["alice"], story["a"]
    items = client.get(f"{HISTORICAL}?account_id={a}", headers=alice.headers).json["items"]
    stamps = [i["at"] for i in items]

    def balances(query: str) -> list[str]:
        found, _ = _all(client, alice, f"account_id={a}&{query}")
        return [i["balance"] for i in found]

    assert balances(f"from={_q(stamps[1])}") == ["125.50", "85.50", "85.51"]
    assert balances(f"to={_q(stamps[2])}") == ["100.00", "125.50", "85.50"]
    assert balances(f"from={_q(stamps[1])}&to={_q(stamps[2])}&limit=1") == ["125.50", "85.50"]
    later = (datetime.fromisoformat(stamps[-1]) + timedelta(hours=1)).isoformat()
    assert balances(f"from={_q(later)}") == []
    # The same instant written with another offset selects the same entries.
    shifted = datetime.fromisoformat(stamps[1]).astimezone(
        datetime.fromisoformat("2026-01-01T00:00:00+05:30").tzinfo
    )
    assert balances(f"from={_q(shifted.isoformat())}") == ["125.50", "85.50", "85.51"]


def test_history_rejects_bad_arguments(client, story):
    alice, a = story["alice"], story["a"]
    for query in (
        "",
        "account_id=nope",
        f"account_id={a}&from=2026-01-01T00:00:00",  # no offset
        f"account_id={a}&to=yesterday",
        f"account_id={a}&cursor=not-a-cursor",
        f"account_id={a}&limit=0",
    ):
        assert_error(client.get(f"{HISTORICAL}?{query}", headers=alice.headers), 422, "validation_error")


def test_history_page_size_is_capped(client, make, app):
    cap = app.config["LEDGERQ_SETTINGS"].page_size_max
    user = make.user()
    source, account = make.account(user, balance="100.00"), make.account(user)
    for tx_id in bulk_pending(user, source, account, cap + 2):  # cap + 2 transfers of 0.01, oldest first
        assert apply_now(tx_id) == "completed"

    first = client.get(f"{HISTORICAL}?account_id={account}&limit=100000", headers=user.headers).json
    assert len(first["items"]) == cap and first["next_cursor"]
    assert first["items"][0]["balance"] == "0.01"
    rest = client.get(
        f"{HISTORICAL}?account_id={account}&limit=100000&cursor={first['next_cursor']}", headers=user.headers
    ).json
    assert [i["balance"] for i in rest["items"]] == [f"{(cap + 1) / 100:.2f}", f"{(cap + 2) / 100:.2f}"]
    assert rest["next_cursor"] is None


def test_balance_at_time_before_between_and_after_entries(client, story):
    alice, a = story["alice"], story["a"]
    stamps = [
        datetime.fromisoformat(i["at"])
        for i in client.get(f"{HISTORICAL}?account_id={a}", headers=alice.headers).json["items"]
    ]
    tiny = timedelta(microseconds=1)

    def at(instant: datetime) -> dict:
        response = client.get(f"{AT_TIME}?account_id={a}&at={_q(instant.isoformat())}", headers=alice.headers)
        assert response.status_code == 200, response.json
        return response.json

    before = at(stamps[0] - timedelta(days=1))
    assert before == {
        "account_id": str(a),
        "at": (stamps[0] - timedelta(days=1)).isoformat(),
        "balance": "0.00",
    }
    assert at(stamps[0] - tiny)["balance"] == "0.00"
    assert at(stamps[0])["balance"] == "100.00"  # inclusive
    assert at(stamps[1] - tiny)["balance"] == "100.00"
    assert at(stamps[2])["balance"] == "85.50"
    assert at(stamps[3] + timedelta(days=365))["balance"] == "85.51"
    # Without `at`: now.
    now = client.get(f"{AT_TIME}?account_id={a}", headers=alice.headers).json
    assert now["balance"] == "85.51" and datetime.fromisoformat(now["at"]).utcoffset() is not None


def test_balance_at_time_rejects_times_without_an_offset(client, story):
    alice, a = story["alice"], story["a"]
    for value in ("2026-01-01T00:00:00", "2026-01-01", "soon", "1700000000"):
        assert_error(
            client.get(f"{AT_TIME}?account_id={a}&at={value}", headers=alice.headers), 422, "validation_error"
        )
    assert_error(
        client.get(f"{AT_TIME}?at=2026-01-01T00:00:00Z", headers=alice.headers), 422, "validation_error"
    )
    ok = client.get(f"{AT_TIME}?account_id={a}&at=2026-01-01T00:00:00Z", headers=alice.headers)
    assert ok.status_code == 200 and ok.json["balance"] == "0.00"


def test_jpy_and_usd_render_with_their_own_decimals(client, make):
    alice = make.user()
    yen, usd = make.account(alice, "JPY", balance="500"), make.account(alice, "USD")
    make.fund(yen, "1250", "JPY")

    items = client.get(f"{HISTORICAL}?account_id={yen}", headers=alice.headers).json["items"]
    assert [(i["amount"], i["balance"]) for i in items] == [("500", "500"), ("1250", "1750")]
    long_ago = _q("2000-01-01T00:00:00+00:00")
    assert (
        client.get(f"{AT_TIME}?account_id={yen}&at={long_ago}", headers=alice.headers).json["balance"] == "0"
    )
    assert client.get(f"{AT_TIME}?account_id={yen}", headers=alice.headers).json["balance"] == "1750"
    assert client.get(f"{AT_TIME}?account_id={usd}", headers=alice.headers).json["balance"] == "0.00"
    assert client.get(f"{HISTORICAL}?account_id={usd}", headers=alice.headers).json == {
        "items": [],
        "next_cursor": None,
    }


def test_another_customers_account_is_not_found_but_staff_see_it(client, make, story):
    a, carol = story["a"], make.user()
    for url in (f"{HISTORICAL}?account_id={a}", f"{AT_TIME}?account_id={a}"):
        theirs = assert_error(client.get(url, headers=carol.headers), 404, "not_found")
        made_up = url.replace(str(a), str(uuid.uuid4()))
        assert assert_error(client.get(made_up, headers=carol.headers), 404, "not_found") == theirs
        assert client.get(url).status_code == 401
        for role in ("finance", "admin"):
            assert client.get(url, headers=make.user(role).headers).status_code == 200
    finance = make.user("finance")
    assert len(client.get(f"{HISTORICAL}?account_id={a}", headers=finance.headers).json["items"]) == 4
