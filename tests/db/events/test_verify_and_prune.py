"""`ledgerq verify` notices a decided transaction without its event; the prune tick
deletes events past the retention period (with their deliveries) and nothing newer."""

from __future__ import annotations

from tests.fixtures.builders import pending_transfer
from tests.fixtures.ledger import apply_now, ledger_problems, sql
from workers.webhooks import prune_once


def test_a_completed_transaction_without_its_event_is_reported(make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    tx_id = pending_transfer(alice, a, b, "1.00")
    assert apply_now(tx_id) == "completed"
    assert ledger_problems() == []

    sql("DELETE FROM events WHERE type = 'transaction.completed' AND data->>'id' = :id", id=tx_id)

    assert ledger_problems() == [
        f"final_transactions_announced: transaction {tx_id} is completed but has no transaction.completed event"
    ]


def test_events_past_the_retention_period_are_pruned_with_their_deliveries(make):
    alice = make.user()
    make.account(alice, balance="1.00")  # a credit: created + completed events, now
    sql(
        "INSERT INTO events (id, type, data, created_at) VALUES "
        "(gen_random_uuid(), 'transaction.created', '{}', now() - interval '31 days'), "
        "(gen_random_uuid(), 'transaction.completed', '{}', now() - interval '29 days')"
    )
    sql(
        "INSERT INTO webhook_subscriptions (id, owner_id, url, event_types, secret_encrypted) "
        "VALUES (gen_random_uuid(), :owner, 'http://127.0.0.1:9/x', '{*}', '\\x00')",
        owner=str(alice.id),
    )
    sql(
        "INSERT INTO webhook_deliveries (id, subscription_id, event_id, event_type) "
        "SELECT gen_random_uuid(), s.id, e.id, e.type FROM webhook_subscriptions s, events e"
    )

    assert prune_once() == 1
    assert sql("SELECT count(*) FROM events WHERE created_at < now() - interval '30 days'") == [(0,)]
    assert sql("SELECT count(*) FROM events") == [(3,)]  # 29 days old and today's two stay
    assert sql("SELECT count(*) FROM webhook_deliveries") == [(3,)]
    assert prune_once() == 0
