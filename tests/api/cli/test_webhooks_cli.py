"""`ledgerq webhooks list|deliveries|retry` against this run's database."""

from __future__ import annotations

from click.testing import CliRunner

from api.cli import main
from db.core.config import get_settings
from tests.fixtures.http import accepted, transfer
from tests.fixtures.scheduling import wait_until
from tests.fixtures.webhooks import receiver, subscribe
from workers.webhooks import deliver_once, dispatch_once


def test_failed_deliveries_are_listed_and_retried_from_the_command_line(client, make, monkeypatch):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="5.00"), make.account(bob)
    runner = CliRunner()
    with receiver() as rx:
        rx.statuses = [500]
        hook = subscribe(client, alice, rx.url, events=["transaction.created"])
        accepted(transfer(client, alice, a, b, "1.00"))
        monkeypatch.setattr(get_settings(), "webhook_retry_window_s", 0.0)
        (delivery_id,) = wait_until(dispatch_once, timeout=10)
        assert deliver_once(delivery_id) == "failed"

        listed = runner.invoke(main, ["webhooks", "list"])
        assert listed.exit_code == 0, listed.output
        assert hook["id"] in listed.output and "failed=1" in listed.output
        failed = runner.invoke(main, ["webhooks", "deliveries", "--status", "failed"])
        assert str(delivery_id) in failed.output and "last_status=500" in failed.output

        retried = runner.invoke(main, ["webhooks", "retry", str(delivery_id)])
        assert retried.exit_code == 0, retried.output
        monkeypatch.setattr(get_settings(), "webhook_retry_window_s", 3600.0)
        assert dispatch_once() == [delivery_id]
        assert deliver_once(delivery_id) == "delivered"
    assert len(rx.received) == 2
    assert "0 failed deliveries" in runner.invoke(main, ["webhooks", "deliveries"]).output
    assert runner.invoke(main, ["webhooks", "retry"]).exit_code != 0  # an id or --all-failed
