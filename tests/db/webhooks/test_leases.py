"""Crash safety of deliveries: a worker that dies mid-attempt leaves a lease that expires
into a retry; a duplicated `webhooks.deliver` message sends nothing twice."""

from __future__ import annotations

from tests.fixtures.http import accepted, transfer
from tests.fixtures.ledger import sql
from tests.fixtures.scheduling import wait_until
from tests.fixtures.webhooks import receiver, subscribe
from workers.webhooks import deliver_once, dispatch_once


def test_a_lost_attempt_is_retried_once_its_lease_expires_and_a_duplicate_message_is_a_no_op(client, make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="5.00"), make.account(bob)
    with receiver() as rx:
        subscribe(client, alice, rx.url, events=["transaction.created"])
        accepted(transfer(client, alice, a, b, "1.00"))
        (claimed,) = wait_until(dispatch_once, timeout=10)
        # The worker that got the message died before sending: the delivery stays leased.
        assert dispatch_once() == []
        sql("UPDATE webhook_deliveries SET lease_until = now() - interval '1 second'")
        assert dispatch_once() == [claimed]  # the same delivery, claimed again
        assert deliver_once(claimed) == "delivered"
        assert deliver_once(claimed) == "skipped"  # the first message, redelivered late
    assert len(rx.received) == 1
    assert sql("SELECT status, attempts FROM webhook_deliveries") == [("delivered", 1)]
