"""Dead letters for ops (admin): inspect, retry, purge."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields

from api.extensions import Blueprint
from api.extensions.auth import current_principal
from db.core.errors import NotFound

blp = Blueprint(
    "dead_letters", __name__, url_prefix="/admin/dead-letters", description="Dead-letter queue (admin)"
)


class DeadLetterSchema(Schema):
    message_id = fields.String()
    queue = fields.String()
    actor_name = fields.String()
    transaction_id = fields.String(allow_none=True)
    dead_at = fields.DateTime(format="iso")
    retries = fields.Integer()
    error = fields.String()


class DeadLetterListSchema(Schema):
    items = fields.List(fields.Nested(DeadLetterSchema))


class RetryResultSchema(Schema):
    message_id = fields.String(allow_none=True)
    transaction_id = fields.String(allow_none=True)
    actor = fields.String()
    batch_id = fields.String(allow_none=True)
    reopened_lines = fields.Integer(
        metadata={"description": "a batch's dead-lettered lines put back to pending by this retry"}
    )
    requeued = fields.Boolean(metadata={"description": "true only when a message was actually sent"})


@blp.route("")
class DeadLetters(MethodView):
    @blp.login_required("admin")
    @blp.response(200, DeadLetterListSchema)
    def get(self):
        """Messages in Dramatiq's dead-letter queues, newest first (admin).

        Each with its queue, actor, retries, when it died, its transaction id (if any) and
        the error: what to look at before retrying or purging."""
        from workers import broker
        from workers.dead_letters import list_dead_letters, with_row_errors

        return {"items": with_row_errors(list_dead_letters(broker))}


@blp.route("/<message_id>/retry")
class RetryDeadLetter(MethodView):
    @blp.login_required("admin")
    @blp.response(202, RetryResultSchema)
    @blp.documents_errors(404, 409)
    def post(self, message_id):
        """Retry a dead letter (admin): send the message again.

        A dead-lettered transaction goes back to `pending` and is applied like a new one. Also
        accepts a transaction id whose message Redis no longer has. A batch chunk's letter (or
        a batch id) reopens the batch: its dead-lettered lines go back to `pending` and it
        resumes at its cursor; `requeued` is false when there was nothing to retry. 409 when
        the transaction is no longer `dead_lettered`."""
        from workers import broker
        from workers.dead_letters import retry

        return retry(broker, message_id, current_principal())


@blp.route("/<message_id>")
class DeadLetterById(MethodView):
    @blp.login_required("admin")
    @blp.response(204)
    @blp.documents_errors(404)
    def delete(self, message_id):
        """Delete a dead letter (admin): drop the message.

        A transaction stays `dead_lettered` (no money moved); it can still be retried by its
        transaction id."""
        from workers import broker
        from workers.dead_letters import find, remove

        letter = find(broker, message_id)
        if letter is None:
            raise NotFound("no such dead letter")
        remove(broker, letter)
