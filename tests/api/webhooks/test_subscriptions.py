"""Subscriptions: the SSRF guard (at registration and at every delivery), the secret
shown once and stored encrypted, who sees which subscription, manual retry."""

from __future__ import annotations

import socket
import uuid

import pytest

from db.core.config import get_settings
from db.models import WebhookDelivery, WebhookSubscription
from db.session import unit_of_work
from db.webhooks import ssrf
from tests.fixtures.http import API, accepted, app_with, assert_error, transfer
from tests.fixtures.scheduling import wait_until
from tests.fixtures.webhooks import deliveries, receiver, subscribe
from workers.webhooks import deliver_once, dispatch_once

PUBLIC = "93.184.215.14"  # a global unicast address (never contacted: see the tests)


def _dns(monkeypatch, answers: dict[str, str]) -> None:
    """Play a DNS server: each host name resolves to the address given (changeable)."""

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            raise socket.gaierror(f"unknown host {host}")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    monkeypatch.setattr(ssrf, "getaddrinfo", getaddrinfo)


@pytest.fixture
def guarded():
    """An app with the SSRF guard on (the suite's default is off, for 127.0.0.1 receivers)."""
    return app_with(webhook_allow_private_hosts=False).test_client()


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",  # plain http
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://[::1]/x",
        "https://internal.example.com/x",  # a name that resolves to a private address
        "https://user:pw@hooks.example.com/x",
        "ftp://hooks.example.com/x",
    ],
)
def test_a_private_or_plain_url_is_refused_at_registration_when_the_guard_is_on(
    guarded, make, monkeypatch, url
):
    _dns(monkeypatch, {"hooks.example.com": PUBLIC, "internal.example.com": "10.0.0.7"})
    user = make.user()
    response = guarded.post(f"{API}/webhooks", json={"url": url, "events": ["*"]}, headers=user.headers)
    error = assert_error(response, 422, "validation_error")
    assert "url" in error["details"]
    with unit_of_work() as uow:
        assert uow.session.query(WebhookSubscription).count() == 0


def test_a_public_https_url_is_accepted_when_the_guard_is_on(guarded, make, monkeypatch):
    _dns(monkeypatch, {"hooks.example.com": PUBLIC})
    response = guarded.post(
        f"{API}/webhooks",
        json={"url": "https://hooks.example.com/x", "events": ["*"]},
        headers=make.user().headers,
    )
    assert response.status_code == 201, response.json


def test_a_dns_answer_that_turns_private_later_is_refused_at_delivery(guarded, make, monkeypatch):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    with receiver() as rx:
        # Registered while hooks.example.com was public...
        answers = {"hooks.example.com": PUBLIC}
        _dns(monkeypatch, answers)
        url = f"http://hooks.example.com:{rx.port}/hook".replace("http://", "https://")
        response = guarded.post(f"{API}/webhooks", json={"url": url, "events": ["*"]}, headers=alice.headers)
        assert response.status_code == 201, response.json
        hook = response.json
        # ... then it resolves to this machine, where the receiver listens.
        answers["hooks.example.com"] = "127.0.0.1"
        monkeypatch.setattr(get_settings(), "webhook_allow_private_hosts", False)
        accepted(transfer(guarded, alice, a, b, "1.00"))
        claimed = wait_until(dispatch_once, timeout=10)
        assert claimed
        outcomes = {deliver_once(delivery_id) for delivery_id in claimed}

    assert outcomes == {"retrying"}
    assert rx.received == []  # nothing reached the internal address
    rows = deliveries(guarded, alice, hook["id"])
    assert rows and all(
        r["attempts"] == 1 and "non-public address (127.0.0.1)" in r["last_error"] for r in rows
    )


def test_the_secret_is_shown_once_and_stored_encrypted(client, make):
    user = make.user()
    hook = subscribe(
        client, user, "http://127.0.0.1:9/hook", events=["transaction.completed"], description="ops"
    )
    secret = hook["secret"]
    assert hook["events"] == ["transaction.completed"] and hook["description"] == "ops"
    shown = client.get(f"{API}/webhooks/{hook['id']}", headers=user.headers).json
    listed = client.get(f"{API}/webhooks", headers=user.headers).json["items"]
    assert "secret" not in shown and all("secret" not in item for item in listed)
    with unit_of_work() as uow:
        stored = uow.session.get(WebhookSubscription, uuid.UUID(hook["id"]))
        assert stored is not None
        assert secret.encode() not in bytes(stored.secret_encrypted)
        from db.webhooks.secrets import decrypt

        assert decrypt(get_settings(), stored.secret_encrypted) == secret


def test_customers_see_only_their_own_subscriptions_and_finance_sees_all(client, make):
    alice, bob, finance = make.user(), make.user(), make.user("finance")
    mine = subscribe(client, alice, "http://127.0.0.1:9/a")
    theirs = subscribe(client, bob, "http://127.0.0.1:9/b")
    assert [h["id"] for h in client.get(f"{API}/webhooks", headers=alice.headers).json["items"]] == [
        mine["id"]
    ]
    assert_error(client.get(f"{API}/webhooks/{theirs['id']}", headers=alice.headers), 404, "not_found")
    assert_error(client.delete(f"{API}/webhooks/{theirs['id']}", headers=alice.headers), 404, "not_found")
    assert_error(
        client.get(f"{API}/webhooks/{theirs['id']}/deliveries", headers=alice.headers), 404, "not_found"
    )
    seen = {h["id"] for h in client.get(f"{API}/webhooks", headers=finance.headers).json["items"]}
    assert {mine["id"], theirs["id"]} <= seen
    assert client.delete(f"{API}/webhooks/{mine['id']}", headers=alice.headers).status_code == 204
    assert_error(client.get(f"{API}/webhooks/{mine['id']}", headers=alice.headers), 404, "not_found")


def test_unknown_event_types_are_a_422(client, make):
    response = client.post(
        f"{API}/webhooks",
        json={"url": "http://127.0.0.1:9/x", "events": ["money.printed"]},
        headers=make.user().headers,
    )
    assert_error(response, 422, "validation_error")


def test_a_delivery_failed_after_its_retry_window_is_listed_and_retryable(client, make, monkeypatch):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    with receiver() as rx:
        rx.statuses = [503]
        hook = subscribe(client, alice, rx.url, events=["transaction.created"])
        accepted(transfer(client, alice, a, b, "1.00"))
        monkeypatch.setattr(get_settings(), "webhook_retry_window_s", 0.0)  # the 24 h are over
        (delivery_id,) = wait_until(dispatch_once, timeout=10)
        assert deliver_once(delivery_id) == "failed"
        (row,) = deliveries(client, alice, hook["id"], status="failed")
        assert row["last_status_code"] == 503 and row["attempts"] == 1
        assert dispatch_once() == []  # failed is final: nothing is retried by itself

        response = client.post(
            f"{API}/webhooks/{hook['id']}/deliveries/{row['id']}/retry", headers=alice.headers
        )
        assert response.status_code == 200, response.json
        assert response.json["status"] == "pending"
        monkeypatch.setattr(get_settings(), "webhook_retry_window_s", 3600.0)
        assert dispatch_once() == [uuid.UUID(row["id"])]
        assert deliver_once(uuid.UUID(row["id"])) == "delivered"

    assert len(rx.received) == 2 and rx.received[0].body == rx.received[1].body
    with unit_of_work() as uow:
        stored = uow.session.get(WebhookDelivery, uuid.UUID(row["id"]))
        assert stored is not None and stored.status == "delivered" and stored.attempts == 2
