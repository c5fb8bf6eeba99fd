"""From the feed to deliveries, and from due deliveries to messages.

`fan_out` reads the event feed (db/events/feed.py, so it never skips an event either)
from its own cursor and creates one delivery per matching subscription. The cursor row
is locked FOR UPDATE: two dispatchers (a redelivered tick, two schedulers) serialize,
and the unique (subscription, event) key makes a repeat harmless anyway.

`claim_due` turns due `pending` deliveries into `delivering` ones with a lease, at most
`webhook_max_in_flight` per endpoint and none while its circuit is open; the caller
sends one `webhooks.deliver` message per claimed id after commit. A lease that expires
(the worker died mid-attempt) makes the delivery `pending` again.

Every transaction here is short: the HTTP attempt itself runs outside any transaction
(db/webhooks/delivery.py), because an open transaction would hold back the feed's
horizon for everyone.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from db.core.config import Settings
from db.core.sql import constant
from db.events.feed import HORIZON
from db.models import WebhookDelivery, WebhookSubscription
from db.webhooks import breaker

LEASE_MARGIN_S = 20  # beyond the attempt's timeout, before a lost attempt is retried

# A subscription gets an event when its types match, it existed when the event was
# written, its owner is active, and the owner may see the event: finance and admin
# everything, a customer the events of accounts they own.
_FAN_OUT = text(
    f"""
    WITH batch AS (
        SELECT e.id, e.type, e.account_ids, e.created_at, e.xid, e.seq FROM events e
        WHERE (e.xid, e.seq) > (SELECT c.xid, c.seq FROM webhook_fanout_cursor c WHERE c.id = 1)
          AND e.xid < {HORIZON}
        ORDER BY e.xid, e.seq LIMIT :limit
    ), created AS (
        INSERT INTO webhook_deliveries (id, subscription_id, event_id, event_type)
        SELECT gen_random_uuid(), s.id, b.id, b.type
        FROM batch b
        JOIN webhook_subscriptions s
          ON s.deleted_at IS NULL AND s.created_at <= b.created_at
         AND ('*' = ANY(s.event_types) OR b.type = ANY(s.event_types))
        JOIN users u ON u.id = s.owner_id AND u.is_active
        WHERE u.role IN ('finance', 'admin')
           OR EXISTS (SELECT 1 FROM accounts a WHERE a.id = ANY(b.account_ids) AND a.owner_id = s.owner_id)
        ON CONFLICT (subscription_id, event_id) DO NOTHING
        RETURNING 1
    ), moved AS (
        UPDATE webhook_fanout_cursor c SET xid = last.xid, seq = last.seq
        FROM (SELECT xid, seq FROM batch ORDER BY xid DESC, seq DESC LIMIT 1) AS last
        WHERE c.id = 1
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM batch) AS events, (SELECT count(*) FROM created) AS deliveries
    """
)


def fan_out(session: Session, settings: Settings) -> tuple[int, int]:
    """Advance the fan-out cursor by up to `webhook_dispatch_batch` events; (events
    read, deliveries created)."""
    # The one cursor row; re-created if missing (a test's TRUNCATE, a restored dump).
    session.execute(
        text("INSERT INTO webhook_fanout_cursor (id, xid, seq) VALUES (1, '0', 0) ON CONFLICT DO NOTHING")
    )
    session.execute(text("SELECT 1 FROM webhook_fanout_cursor WHERE id = 1 FOR UPDATE"))
    row = session.execute(_FAN_OUT, {"limit": settings.webhook_dispatch_batch}).one()
    return int(row.events), int(row.deliveries)


def release_expired_leases(session: Session) -> int:
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.status == "delivering", WebhookDelivery.lease_until < func.now())
        .values(status="pending", lease_until=None, next_attempt_at=func.now())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _in_flight(session: Session, subscription_id: uuid.UUID) -> int:
    return (
        session.scalar(
            select(func.count()).where(
                WebhookDelivery.subscription_id == subscription_id, WebhookDelivery.status == "delivering"
            )
        )
        or 0
    )


def claim_for(
    session: Session, sub: WebhookSubscription, now: datetime, settings: Settings
) -> list[uuid.UUID]:
    """Claim what this endpoint may take now (its row locked by the caller)."""
    free = breaker.slots(sub, _in_flight(session, sub.id), now, settings)
    if free <= 0:
        return []
    ids = list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.subscription_id == sub.id,
                WebhookDelivery.status == constant("pending"),  # ix_webhook_deliveries_due
                WebhookDelivery.next_attempt_at <= now,
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(free)
            .with_for_update(skip_locked=True)
        )
    )
    if ids:
        breaker.on_claim(sub)
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids))
            .values(
                status="delivering",
                lease_until=now + timedelta(seconds=settings.webhook_timeout_s + LEASE_MARGIN_S),
            )
        )
    return ids


def claim_due(session: Session, settings: Settings, *, now: datetime | None = None) -> list[uuid.UUID]:
    """Due deliveries of every endpoint, within each one's concurrency and circuit."""
    now = now or session.scalar(select(func.now()))
    assert now is not None
    due_subscriptions = select(WebhookDelivery.subscription_id).where(
        WebhookDelivery.status == constant("pending"), WebhookDelivery.next_attempt_at <= now
    )
    subs = session.scalars(
        select(WebhookSubscription)
        .where(WebhookSubscription.id.in_(due_subscriptions), WebhookSubscription.deleted_at.is_(None))
        .with_for_update(skip_locked=True)
    ).all()
    claimed: list[uuid.UUID] = []
    for sub in subs:
        claimed += claim_for(session, sub, now, settings)
    session.flush()
    return claimed


def oldest_undelivered_age_s(session: Session) -> float:
    """Seconds since the oldest event still waiting to be delivered was written (0: none)."""
    age = session.scalar(
        text(
            "SELECT EXTRACT(EPOCH FROM now() - min(e.created_at)) FROM webhook_deliveries d "
            "JOIN events e ON e.id = d.event_id WHERE d.status IN ('pending', 'delivering')"
        )
    )
    return float(age or 0)


def circuit_counts(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(WebhookSubscription.circuit_state, func.count())
        .where(WebhookSubscription.deleted_at.is_(None))
        .group_by(WebhookSubscription.circuit_state)
    ).all()
    counts = {"closed": 0, "open": 0, "half_open": 0}
    counts.update({state: int(n) for state, n in rows})
    return counts
