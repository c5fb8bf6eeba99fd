"""Webhook subscriptions and their deliveries, as the API and the CLI see them.

Visibility follows the events': a customer manages only their own subscriptions (and
receives only their own accounts' events, db/webhooks/dispatch.py); finance and admin
see every subscription and may subscribe to everything. Another user's subscription
is a 404, like one that does not exist.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.orm import Session

from db.audit import repository as audit
from db.core.config import Settings
from db.core.errors import Conflict, NotFound, ValidationFailed
from db.core.principal import Principal
from db.models import EVENT_TYPES, WebhookDelivery, WebhookSubscription
from db.webhooks import secrets, ssrf

MAX_SUBSCRIPTIONS_PER_USER = 20


@dataclass(frozen=True)
class Created:
    subscription: WebhookSubscription
    secret: str  # shown once, in the 201 answer


def create(
    session: Session,
    principal: Principal,
    *,
    url: str,
    events: list[str],
    description: str | None,
    settings: Settings,
) -> Created:
    unknown = sorted(set(events) - set(EVENT_TYPES) - {"*"})
    if not events or unknown:
        raise ValidationFailed.field(
            "events", f"unknown event types: {unknown}" if unknown else "at least one"
        )
    try:
        ssrf.resolve(url, allow_private=settings.webhook_allow_private_hosts)
    except ssrf.UnsafeUrl as refused:
        raise ValidationFailed.field("url", str(refused)) from None
    count = session.scalar(
        select(func.count()).where(
            WebhookSubscription.owner_id == principal.id, WebhookSubscription.deleted_at.is_(None)
        )
    )
    if (count or 0) >= MAX_SUBSCRIPTIONS_PER_USER:
        raise Conflict(
            f"at most {MAX_SUBSCRIPTIONS_PER_USER} webhooks per user", {"limit": MAX_SUBSCRIPTIONS_PER_USER}
        )
    secret = secrets.new_secret()
    sub = WebhookSubscription(
        id=uuid.uuid4(),
        owner_id=principal.id,
        url=url,
        event_types=sorted(set(events)),
        description=description or "",
        secret_encrypted=secrets.encrypt(settings, secret),
    )
    session.add(sub)
    audit.record(
        session,
        action="webhook.created",
        entity_type="webhook",
        entity_id=sub.id,
        actor_id=principal.id,
        data={"url": url, "events": sub.event_types},
    )
    session.flush()
    session.refresh(sub)
    return Created(sub, secret)


def _visible(principal: Principal):
    query = select(WebhookSubscription).where(WebhookSubscription.deleted_at.is_(None))
    if not principal.sees_everything:
        query = query.where(WebhookSubscription.owner_id == principal.id)
    return query


def list_visible(session: Session, principal: Principal, *, after: uuid.UUID | None, limit: int):
    query = _visible(principal).order_by(WebhookSubscription.id).limit(limit + 1)
    if after is not None:
        query = query.where(WebhookSubscription.id > after)
    return list(session.scalars(query))


def get_visible(session: Session, principal: Principal, subscription_id: uuid.UUID) -> WebhookSubscription:
    sub = session.scalars(_visible(principal).where(WebhookSubscription.id == subscription_id)).one_or_none()
    if sub is None:
        raise NotFound("webhook not found")
    return sub


def delete(session: Session, principal: Principal, subscription_id: uuid.UUID) -> None:
    """Soft delete: no new deliveries, pending ones end `failed`; the history stays for operators."""
    sub = get_visible(session, principal, subscription_id)
    sub.deleted_at = func.now()
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == sub.id, WebhookDelivery.status == "pending")
        .values(status="failed", last_error="the subscription was deleted")
    )
    audit.record(
        session, action="webhook.deleted", entity_type="webhook", entity_id=sub.id, actor_id=principal.id
    )
    session.flush()


def deliveries(
    session: Session,
    subscription_id: uuid.UUID,
    *,
    status: str | None,
    before: tuple[datetime, uuid.UUID] | None = None,
    limit: int,
) -> list[WebhookDelivery]:
    """Newest first (created_at, id) for one subscription (visibility checked by the caller)."""
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    if before is not None:
        query = query.where(tuple_(WebhookDelivery.created_at, WebhookDelivery.id) < tuple_(*before))
    query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(limit + 1)
    return list(session.scalars(query))


def retry(
    session: Session, subscription_id: uuid.UUID, delivery_id: uuid.UUID, actor_id: uuid.UUID | None
) -> WebhookDelivery:
    """Due now, with a fresh retry window: for a `failed` delivery, or to send a
    `pending` one without waiting for its backoff (and a delivered one again: receivers
    deduplicate by event id). 409 while an attempt is in flight."""
    delivery = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.subscription_id == subscription_id)
        .with_for_update()
    ).one_or_none()
    if delivery is None:
        raise NotFound("delivery not found")
    if delivery.status == "delivering":
        raise Conflict("an attempt is in flight right now", {"status": delivery.status})
    previous = delivery.status
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id)
        .values(status="pending", next_attempt_at=func.now(), window_started_at=func.now())
    )
    audit.record(
        session,
        action="webhook.delivery_retried",
        entity_type="webhook_delivery",
        entity_id=delivery.id,
        actor_id=actor_id,
        data={"previous_status": previous},
    )
    session.flush()
    session.refresh(delivery)
    return delivery


def failed_deliveries(session: Session, *, limit: int) -> list[WebhookDelivery]:
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.status == "failed")
            .order_by(WebhookDelivery.updated_at.desc())
            .limit(limit)
        )
    )
