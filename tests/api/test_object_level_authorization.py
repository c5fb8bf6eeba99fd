"""BOLA walk: a customer reaching for another customer's objects through *every*
id-taking endpoint of the app gets exactly what a made-up id gets (404, or 403 where
the role is refused outright) and never a byte of the other customer's data.

The walk is driven by the app's URL map and OpenAPI document, so a new endpoint is
covered the day it is added; an id parameter with no victim builder below fails the
test until someone says how to make the victim's object.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from db.models import Transaction
from db.session import unit_of_work


@dataclass
class Party:
    user: object
    account_id: uuid.UUID
    transaction_id: uuid.UUID
    schedule_id: uuid.UUID
    webhook_id: uuid.UUID
    delivery_id: uuid.UUID

    @property
    def secrets(self) -> set[str]:
        """Ids that must never show up in another customer's responses."""
        return {
            str(self.account_id),
            str(self.transaction_id),
            str(self.user.id),
            str(self.schedule_id),
            str(self.webhook_id),
            str(self.delivery_id),
        }


# How to name a party's object for each id parameter an endpoint may take.
ID_BUILDERS: dict[str, Callable[[Party], object]] = {
    "account_id": lambda party: party.account_id,
    "transaction_id": lambda party: party.transaction_id,
    "user_id": lambda party: party.user.id,
    "owner_id": lambda party: party.user.id,
    "schedule_id": lambda party: party.schedule_id,
    "webhook_id": lambda party: party.webhook_id,
    "delivery_id": lambda party: party.delivery_id,
    # Admin-only: customers are refused (403) whatever the id, so any value will do.
    "message_id": lambda party: uuid.uuid4(),
    # Batches are finance/admin only: a customer is refused (403) whatever the id.
    "batch_id": lambda party: uuid.uuid4(),
    # The audit log is admin-only: a customer is refused (403) whatever the entity.
    "entity_id": lambda party: uuid.uuid4(),
}
# Query filters whose resources do not exist on this code base yet. The moment such a
# resource gets an endpoint of its own, the test below insists on a real builder.
NO_OBJECTS_YET: set[str] = set()
# Path parameters that name public reference data, not anybody's object: the currencies
# of an exchange rate (every signed-in user reads every rate; only finance/admin write,
# which the role check refuses whatever the pair). Routes taking only these are no BOLA target.
PUBLIC_PARAMETERS = {"base", "quote"}

_PATH_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def _party(make) -> Party:
    from db.core.config import get_settings
    from db.models import WebhookDelivery
    from db.schedules.service import StandingOrder, create
    from db.webhooks import dispatch
    from db.webhooks import service as webhooks

    user = make.user()
    with unit_of_work() as uow:  # subscribed first, so the funding below is delivered to it
        hook = webhooks.create(
            uow.session,
            user.principal,
            url="http://127.0.0.1:9/hook",
            events=["*"],
            description=None,
            settings=get_settings(),
        ).subscription
    account_id = make.account(user, balance="50.00")
    savings = make.account(user)
    with unit_of_work() as uow:
        tx_id = uow.session.scalars(
            select(Transaction.id).where(Transaction.to_account_id == account_id)
        ).one()
        standing_order = StandingOrder(
            from_account_id=account_id, to_account_id=savings, amount="1.00", currency="USD", cron="0 9 1 * *"
        )
        schedule = create(uow.session, user.principal, standing_order, settings=get_settings())
    with unit_of_work() as uow:
        dispatch.fan_out(uow.session, get_settings())
    with unit_of_work() as uow:
        delivery_id = uow.session.scalars(
            select(WebhookDelivery.id).where(WebhookDelivery.subscription_id == hook.id).limit(1)
        ).one()
    return Party(user, account_id, tx_id, schedule.id, hook.id, delivery_id)


def _fill(rule: str, party: Party | None) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        return str(ID_BUILDERS[name](party)) if party else str(uuid.uuid4())

    return _PATH_ARG.sub(value, rule)


def _id_routes(app) -> list[tuple[str, str, list[str]]]:
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/") and rule.arguments - PUBLIC_PARAMETERS:
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                routes.append((method, rule.rule, sorted(rule.arguments)))
    return routes


def _call(client, method: str, url: str, headers):
    return client.open(url, method=method, json=None if method in ("GET", "DELETE") else {}, headers=headers)


def _error_code(response) -> str | None:
    body = response.get_json(silent=True) or {}
    return (body.get("error") or {}).get("code")


@pytest.fixture
def parties(make):
    return _party(make), _party(make)  # victim, attacker


def test_every_id_parameter_has_a_victim_builder(app):
    path_params = {name for _, _, names in _id_routes(app) for name in names}
    missing = path_params - set(ID_BUILDERS)
    assert not missing, f"add builders to ID_BUILDERS for {sorted(missing)} so the BOLA walk covers them"
    assert not path_params & NO_OBJECTS_YET, (
        f"{sorted(path_params & NO_OBJECTS_YET)} now have endpoints: build a victim object in ID_BUILDERS"
    )


def test_path_ids_of_another_customer_look_like_ids_that_do_not_exist(app, client, parties):
    victim, attacker = parties
    routes = _id_routes(app)
    assert {"/api/v1/accounts/<uuid:account_id>", "/api/v1/transactions/<uuid:transaction_id>"} <= {
        rule for _, rule, _ in routes
    }
    for method, rule, _ in routes:
        if method == "GET":
            own = _call(client, method, _fill(rule, attacker), attacker.user.headers)
            assert own.status_code in (200, 403), (
                f"{method} {rule} on own object: {own.status_code} {own.json}"
            )

        theirs = _call(client, method, _fill(rule, victim), attacker.user.headers)
        nothing = _call(client, method, _fill(rule, None), attacker.user.headers)
        where = f"{method} {rule}"
        assert theirs.status_code in (403, 404), f"{where}: {theirs.status_code} {theirs.json}"
        assert (theirs.status_code, _error_code(theirs)) == (nothing.status_code, _error_code(nothing)), where
        leaked = {secret for secret in victim.secrets if secret in theirs.get_data(as_text=True)}
        assert not leaked, f"{where} leaked {leaked}"

    # And nothing the walk sent changed the victim's state.
    mine = client.get(f"/api/v1/users/{victim.user.id}", headers=victim.user.headers).json
    assert mine["is_active"] is True and mine["role"] == "customer"
    assert (
        client.get(f"/api/v1/accounts/{victim.account_id}", headers=victim.user.headers).json["status"]
        == "active"
    )
    schedule = client.get(f"/api/v1/schedules/{victim.schedule_id}", headers=victim.user.headers).json
    assert schedule["status"] == "active"


def test_query_ids_of_another_customer_reveal_nothing(client, parties):
    victim, attacker = parties
    spec = client.get("/api/v1/openapi.json").json
    walked = set()
    for path, operations in spec["paths"].items():
        get = operations.get("get")
        if get is None or "{" in path:
            continue
        for param in get.get("parameters", []):
            name = param["name"]
            if param["in"] != "query" or not name.endswith("_id") or name in NO_OBJECTS_YET:
                continue
            assert name in ID_BUILDERS, f"GET {path}?{name}=: add a builder to ID_BUILDERS"
            url = path
            theirs = client.get(
                url, query_string={name: str(ID_BUILDERS[name](victim))}, headers=attacker.user.headers
            )
            nothing = client.get(url, query_string={name: str(uuid.uuid4())}, headers=attacker.user.headers)
            where = f"GET {path}?{name}="
            if name == "account_id":
                assert theirs.status_code == 404, f"{where}: {theirs.status_code}"
            assert theirs.status_code == nothing.status_code, where
            leaked = {secret for secret in victim.secrets if secret in theirs.get_data(as_text=True)}
            assert not leaked, f"{where} leaked {leaked}"
            walked.add(f"{path}?{name}")
    assert {"/api/v1/balances/current?account_id", "/api/v1/transactions/history?account_id"} <= walked
