"""PUT/GET /fx/rates: who may set them, their format, their audit and their history."""

from __future__ import annotations

import pytest

from tests.fixtures.fx import exchange, set_rate
from tests.fixtures.http import accepted, assert_error
from tests.fixtures.ledger import audit_events, sql, transaction

API = "/api/v1"


def test_finance_sets_a_rate_everyone_reads_it_and_each_change_is_audited_and_kept(client, make):
    finance, alice = make.user("finance"), make.user()
    first = set_rate(client, finance, "USD", "EUR", "0.9200", 15)
    assert first.status_code == 200
    assert {k: first.json[k] for k in ("base", "quote", "rate", "fee_bps")} == {
        "base": "USD",
        "quote": "EUR",
        "rate": "0.92",
        "fee_bps": 15,
    }
    assert first.json["updated_at"] and first.json["updated_by"] == str(finance.id)
    assert (
        set_rate(client, finance, "USD", "EUR", "0.92", 15).json["version"] == first.json["version"]
    )  # unchanged
    second = set_rate(client, finance, "USD", "EUR", "0.9215")  # fee_bps defaults to 0
    assert (second.json["rate"], second.json["fee_bps"]) == ("0.9215", 0)
    set_rate(client, finance, "GBP", "JPY", "190.5", 20)

    listed = client.get(f"{API}/fx/rates", headers=alice.headers).json["items"]
    assert [(r["base"], r["quote"], r["rate"]) for r in listed] == [
        ("GBP", "JPY", "190.5"),
        ("USD", "EUR", "0.9215"),
    ]
    assert client.get(f"{API}/fx/rates/USD/EUR", headers=alice.headers).json == second.json

    history = client.get(f"{API}/fx/rates/USD/EUR/history", headers=alice.headers).json
    assert [(v["rate"], v["fee_bps"]) for v in history["items"]] == [("0.9215", 0), ("0.92", 15)]
    audited = [data for action, data in audit_events("USD/EUR") if action == "fx.rate_set"]
    assert [(d["rate"], d["previous_rate"], d["previous_fee_bps"]) for d in audited] == [
        ("0.92", None, None),
        ("0.9215", "0.92", 15),
    ]
    # The history is append-only in the database too.
    with pytest.raises(Exception, match="append-only"):
        sql("UPDATE fx_rate_versions SET rate = 1")


def test_an_exchange_names_the_rate_version_it_applied(client, make):
    finance, alice = make.user("finance"), make.user()
    source, target = make.account(alice, currency="USD", balance="5.00"), make.account(alice, currency="EUR")
    old = set_rate(client, finance, "USD", "EUR", "0.9").json["version"]
    tx = exchange(client, alice, source, target, "1.00", "USD")
    set_rate(client, finance, "USD", "EUR", "0.8")
    assert tx.json["rate_version"] == old == transaction(accepted(tx)).fx_rate_version_id


def test_customers_may_not_set_rates(client, make):
    assert_error(set_rate(client, make.user(), "USD", "EUR", "1.1"), 403, "forbidden")
    assert sql("SELECT count(*) FROM fx_rate_versions")[0][0] == 0


@pytest.mark.parametrize(
    ("base", "quote"), [("USD", "USD"), ("USD", "XXX"), ("usd", "EUR"), ("HRK", "EUR"), ("USDX", "EUR")]
)
def test_unknown_currencies_and_a_pair_of_one_currency_are_422(client, make, base, quote):
    finance = make.user("finance")
    assert_error(set_rate(client, finance, base, quote, "1.1"), 422, "validation_error")
    assert_error(
        client.get(f"{API}/fx/rates/{base}/{quote}", headers=finance.headers), 422, "validation_error"
    )


def test_a_pair_without_a_rate_is_404(client, make):
    assert_error(client.get(f"{API}/fx/rates/USD/EUR", headers=make.user().headers), 404, "not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"rate": 1.5},
        {"rate": "1e2"},
        {"rate": "-1.5"},
        {"rate": "0"},
        {"rate": "1.2345678901234"},
        {"rate": "NaN"},
        {"rate": "1.5", "fee_bps": 10000},
        {"rate": "1.5", "fee_bps": -1},
        {"rate": "1.5", "fee_bps": 1.5},
        {"rate": "1.5", "fee_bps": "10"},
        {"fee_bps": 10},
    ],
)
def test_hostile_rate_bodies_are_422_and_record_nothing(client, make, body):
    finance = make.user("finance")
    response = client.put(f"{API}/fx/rates/USD/EUR", json=body, headers=finance.headers)
    assert_error(response, 422, "validation_error")
    assert sql("SELECT count(*) FROM fx_rate_versions")[0][0] == 0


def test_the_new_codes_and_endpoints_are_in_the_openapi_document_and_money_rules(client):
    from pathlib import Path

    spec = client.get(f"{API}/openapi.json").json
    assert "`rate_changed`" in spec["info"]["description"]
    paths = spec["paths"]
    exchange_post = paths["/api/v1/transactions/exchange"]["post"]["responses"]
    assert "rate_changed" in exchange_post["409"]["description"]
    assert "validation_error" in exchange_post["422"]["description"]
    assert {"get", "put"} <= set(paths["/api/v1/fx/rates/{base}/{quote}"])
    assert "get" in paths["/api/v1/fx/rates"] and "get" in paths["/api/v1/fx/rates/{base}/{quote}/history"]
    transaction = spec["components"]["schemas"]["Transaction"]["properties"]
    assert {"to_amount", "to_currency", "rate", "fee", "rate_version"} <= set(transaction)
    assert "exchange" in transaction["type"]["enum"]
    rules = (Path(__file__).parents[3] / "deployment" / "MONEY_RULES.md").read_text()
    table = rules[rules.index("## Error codes") :]
    assert "`rate_changed`" in table
