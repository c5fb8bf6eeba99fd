"""The webhook metrics move with what happens: deliveries by outcome, attempt latency,
the age of the oldest undelivered event, and circuit states."""

from __future__ import annotations

from prometheus_client import REGISTRY

from db.core.config import get_settings
from tests.fixtures.http import accepted, transfer
from tests.fixtures.ledger import sql
from tests.fixtures.scheduling import wait_until
from tests.fixtures.webhooks import receiver, subscribe
from workers.webhooks import deliver_once, dispatch_once


def _value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_deliveries_latency_oldest_undelivered_and_circuits_are_exported(client, make, monkeypatch):
    monkeypatch.setattr(get_settings(), "webhook_retry_base_s", 60.0)  # no retry comes due by itself
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="5.00"), make.account(bob)
    before = {o: _value("ledgerq_webhook_deliveries_total", outcome=o) for o in ("delivered", "retrying")}
    attempts = _value("ledgerq_webhook_attempt_seconds_count")
    with receiver() as rx:
        rx.statuses = [500, 500, 500]
        subscribe(client, alice, rx.url, events=["transaction.created"])
        for _ in range(3):
            accepted(transfer(client, alice, a, b, "1.00"))
        claimed = wait_until(dispatch_once, timeout=10)
        assert len(claimed) == 2  # WEBHOOK_MAX_IN_FLIGHT
        assert [deliver_once(i) for i in claimed] == ["retrying", "retrying"]
        # The third was claimed as soon as a slot freed up (no worker here to send it to).
        ((third,),) = sql("SELECT id FROM webhook_deliveries WHERE status = 'delivering'")
        dispatch_once()
        assert _value("ledgerq_webhook_oldest_undelivered_seconds") > 0
        assert _value("ledgerq_webhook_circuits", state="closed") == 1
        assert deliver_once(third) == "retrying"  # the third failure in a row opens the circuit
        dispatch_once()
        assert _value("ledgerq_webhook_circuits", state="open") == 1

        # The pause is over and the retries are due: one probe, which succeeds.
        sql("UPDATE webhook_subscriptions SET circuit_retry_at = now()")
        sql("UPDATE webhook_deliveries SET next_attempt_at = now()")
        (probe,) = wait_until(dispatch_once, timeout=10)
        dispatch_once()
        assert _value("ledgerq_webhook_circuits", state="half_open") == 1
        assert deliver_once(probe) == "delivered"
        dispatch_once()
        assert _value("ledgerq_webhook_circuits", state="closed") == 1

    assert _value("ledgerq_webhook_deliveries_total", outcome="retrying") - before["retrying"] == 3
    assert _value("ledgerq_webhook_deliveries_total", outcome="delivered") - before["delivered"] == 1
    assert _value("ledgerq_webhook_attempt_seconds_count") - attempts == 4
