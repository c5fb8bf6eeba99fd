"""GET /events: every state change worth telling, in a stable order that never skips
(db/events/feed.py); customers see their own accounts' events, finance and admin all."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from api.extensions import Blueprint
from api.extensions.auth import current_principal
from api.extensions.database import get_session
from api.extensions.schemas import INT4_MAX
from db.events import feed
from db.models import EVENT_TYPES

blp = Blueprint("events", __name__, url_prefix="/events", description="Events (the outbox feed)")


class EventArgsSchema(Schema):
    after = fields.String(
        load_default=None,
        validate=validate.Length(max=64),
        metadata={
            "description": "the `next_cursor` of the previous page; omit to start at the oldest event kept"
        },
    )
    type = fields.String(load_default=None, validate=validate.OneOf(EVENT_TYPES))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=INT4_MAX))


class EventSchema(Schema):
    id = fields.UUID()
    type = fields.String(metadata={"enum": list(EVENT_TYPES)})
    created_at = fields.Function(lambda e: e.created_at.isoformat(), metadata={"type": "string"})
    data = fields.Dict(metadata={"description": "the resource as GET would have rendered it then"})


class EventPageSchema(Schema):
    items = fields.List(fields.Nested(EventSchema))
    next_cursor = fields.String(
        metadata={"description": "always set: poll again with ?after=<next_cursor> to get what came next"}
    )


@blp.route("")
class Events(MethodView):
    @blp.login_required()
    @blp.arguments(EventArgsSchema, location="query")
    @blp.response(200, EventPageSchema)
    @blp.documents_errors(422)
    def get(self, args):
        """Events after `after`, oldest first.

        Ordered by the transaction that wrote them; an event is listed only once every
        transaction that started before its own has ended, so a client polling with the last
        `next_cursor` sees every event exactly once, however many transactions commit
        concurrently. Events are kept at least 30 days (`LEDGERQ_EVENT_RETENTION_DAYS`).
        """
        result = feed.read(
            get_session(),
            current_principal(),
            after=args["after"],
            limit=min(args["limit"], current_app.config["LEDGERQ_SETTINGS"].page_size_max),
            event_type=args["type"],
        )
        return {"items": result.items, "next_cursor": result.next_cursor}
