"""Webhook subscriptions and their deliveries (db/webhooks/service.py decides who sees
what: customers their own, finance and admin all)."""

from __future__ import annotations

import uuid
from datetime import datetime

from flask import current_app
from flask.views import MethodView

from api.extensions import Blueprint
from api.extensions.auth import current_principal
from api.extensions.database import get_session, get_uow
from api.extensions.schemas import PageArgsSchema
from api.webhooks.schemas import (
    DeliveryArgsSchema,
    DeliveryPageSchema,
    DeliverySchema,
    WebhookCreatedSchema,
    WebhookCreateSchema,
    WebhookPageSchema,
    WebhookSchema,
)
from db.webhooks import service as webhooks

blp = Blueprint("webhooks", __name__, url_prefix="/webhooks", description="Webhooks (signed event delivery)")


def _delivery_position(position: str) -> tuple[datetime, uuid.UUID]:
    moment, _, delivery_id = position.partition("|")
    return datetime.fromisoformat(moment), uuid.UUID(delivery_id)


@blp.route("")
class Webhooks(MethodView):
    @blp.login_required()
    @blp.arguments(WebhookCreateSchema)
    @blp.response(201, WebhookCreatedSchema)
    @blp.documents_errors(409, 422)
    def post(self, body):
        """Subscribe a URL to event types; the answer carries the signing `secret`, once.

        Each delivery is `POST url` with the event JSON and the headers `Ledgerq-Event-Id`,
        `Ledgerq-Event-Type` and `Ledgerq-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
        "<t>.<raw body>")>`. A 2xx within 10 s is delivered; anything else is retried with
        exponential backoff and jitter (the first retry within a minute) for at least 24 h,
        then the delivery is `failed` (listed, retryable). At least once, in no guaranteed
        order: deduplicate by event id. The URL must be https and resolve to public
        addresses only (checked now and at every delivery); redirects are not followed.
        Customers receive their own accounts' events; finance and admin everything."""
        uow = get_uow()
        created = webhooks.create(
            uow.session,
            current_principal(),
            url=body["url"],
            events=body["events"],
            description=body["description"],
            settings=current_app.config["LEDGERQ_SETTINGS"],
        )
        uow.commit()
        return created

    @blp.login_required()
    @blp.arguments(PageArgsSchema, location="query")
    @blp.keyset_page(lambda sub: sub.id, cursor=uuid.UUID)
    @blp.response(200, WebhookPageSchema)
    @blp.documents_errors(422)
    def get(self, args, page):
        """List webhook subscriptions.

        Your own subscriptions (finance and admin: everyone's), with their event types,
        circuit state and delivery counts; never a secret. Cursor-paginated."""
        rows = webhooks.list_visible(get_session(), current_principal(), after=page.after, limit=page.limit)
        return page.of(rows)


@blp.route("/<uuid:webhook_id>")
class WebhookById(MethodView):
    @blp.login_required()
    @blp.response(200, WebhookSchema)
    @blp.documents_errors(404)
    def get(self, webhook_id):
        """One webhook subscription.

        Its URL, event types, circuit state and delivery counts; never its secret (shown
        once, at creation). Another customer's subscription is 404."""
        return webhooks.get_visible(get_session(), current_principal(), webhook_id)

    @blp.login_required()
    @blp.response(204)
    @blp.documents_errors(404)
    def delete(self, webhook_id):
        """Unsubscribe a webhook.

        No further deliveries are made to it; deliveries still pending end `failed`. The
        events themselves stay in the feed (`GET /events`)."""
        uow = get_uow()
        webhooks.delete(uow.session, current_principal(), webhook_id)
        uow.commit()


@blp.route("/<uuid:webhook_id>/deliveries")
class Deliveries(MethodView):
    @blp.login_required()
    @blp.arguments(DeliveryArgsSchema, location="query")
    @blp.keyset_page(lambda d: f"{d.created_at.isoformat()}|{d.id}", cursor=_delivery_position)
    @blp.response(200, DeliveryPageSchema)
    @blp.documents_errors(404, 422)
    def get(self, args, webhook_id, page):
        """List a subscription's deliveries.

        Newest first, optionally by `status`: each with its event, attempts, last status
        code, latency and next attempt time. Cursor-paginated."""
        session = get_session()
        sub = webhooks.get_visible(session, current_principal(), webhook_id)
        rows = webhooks.deliveries(
            session, sub.id, status=args["status"], before=page.after, limit=page.limit
        )
        return page.of(rows)


@blp.route("/<uuid:webhook_id>/deliveries/<uuid:delivery_id>/retry")
class RetryDelivery(MethodView):
    @blp.login_required()
    @blp.response(200, DeliverySchema)
    @blp.documents_errors(404, 409)
    def post(self, webhook_id, delivery_id):
        """Retry a webhook delivery.

        Sends the delivery again now, with a fresh retry window (for a `failed` one, after
        its endpoint is fixed). 409 while an attempt is in flight."""
        uow = get_uow()
        principal = current_principal()
        sub = webhooks.get_visible(uow.session, principal, webhook_id)
        delivery = webhooks.retry(uow.session, sub.id, delivery_id, principal.id)
        uow.commit()
        return delivery
