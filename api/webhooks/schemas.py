from __future__ import annotations

from types import SimpleNamespace

from marshmallow import Schema, fields, pre_dump, validate

from api.extensions.schemas import PageArgsSchema, page_schema
from db.models import EVENT_TYPES, WEBHOOK_DELIVERY_STATUSES

_EVENTS_DOC = 'event types to receive, or ["*"] for all: ' + ", ".join(EVENT_TYPES)


class WebhookCreateSchema(Schema):
    url = fields.String(
        required=True,
        validate=validate.Length(min=1, max=2048),
        metadata={
            "description": "https, resolving only to public addresses (unless WEBHOOK_ALLOW_PRIVATE_HOSTS)"
        },
    )
    events = fields.List(
        fields.String(validate=validate.OneOf([*EVENT_TYPES, "*"])),
        required=True,
        validate=validate.Length(min=1, max=len(EVENT_TYPES) + 1),
        metadata={"description": _EVENTS_DOC},
    )
    description = fields.String(load_default=None, validate=validate.Length(max=255))


class WebhookSchema(Schema):
    id = fields.UUID()
    owner_id = fields.UUID()
    url = fields.String()
    events = fields.Function(lambda s: list(s.event_types))
    description = fields.String()
    circuit_state = fields.String(
        metadata={
            "enum": ["closed", "open", "half_open"],
            "description": "open: paused after repeated failures",
        }
    )
    consecutive_failures = fields.Integer()
    created_at = fields.Function(lambda s: s.created_at.isoformat(), metadata={"type": "string"})


class WebhookCreatedSchema(WebhookSchema):
    """Dumps a `db.webhooks.service.Created`: the subscription and its secret."""

    secret = fields.String(
        metadata={"description": "the signing secret; shown only in this answer (stored encrypted)"}
    )

    @pre_dump
    def _with_secret(self, created, **kwargs):
        sub = created.subscription
        return SimpleNamespace(
            **{name: getattr(sub, name) for name in _SUBSCRIPTION_FIELDS}, secret=created.secret
        )


_SUBSCRIPTION_FIELDS = (
    "id",
    "owner_id",
    "url",
    "event_types",
    "description",
    "circuit_state",
    "consecutive_failures",
    "created_at",
)


WebhookPageSchema = page_schema(WebhookSchema, "WebhookPage")


class DeliveryArgsSchema(PageArgsSchema):
    status = fields.String(load_default=None, validate=validate.OneOf(WEBHOOK_DELIVERY_STATUSES))


class DeliverySchema(Schema):
    id = fields.UUID()
    webhook_id = fields.Function(lambda d: str(d.subscription_id))
    event_id = fields.UUID()
    event_type = fields.String()
    status = fields.String(metadata={"enum": list(WEBHOOK_DELIVERY_STATUSES)})
    attempts = fields.Integer()
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    last_latency_ms = fields.Integer(allow_none=True)
    last_attempt_at = fields.DateTime(format="iso", allow_none=True)
    next_attempt_at = fields.DateTime(
        format="iso", allow_none=True, metadata={"description": "when pending: the next attempt is due"}
    )
    delivered_at = fields.DateTime(format="iso", allow_none=True)
    created_at = fields.DateTime(format="iso")


DeliveryPageSchema = page_schema(DeliverySchema, "WebhookDeliveryPage")
