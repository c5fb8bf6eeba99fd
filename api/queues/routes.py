"""Queue statistics for ops (admin): GET /admin/queues."""

from __future__ import annotations

from datetime import UTC, datetime

from flask.views import MethodView

from api.extensions import Blueprint
from api.queues.schemas import QueuesSchema
from db.core.errors import Unavailable

blp = Blueprint("queues", __name__, url_prefix="/admin/queues", description="Queue statistics (admin)")


@blp.route("")
class Queues(MethodView):
    @blp.login_required("admin")
    @blp.response(200, QueuesSchema)
    @blp.documents_errors(503)
    def get(self):
        """Message counts per queue.

        `depth`: waiting to be fetched; `in_flight`: fetched by a worker, not yet
        acknowledged; `delayed`: retry backoff or delayed sends; `dead_letters`: in the
        dead-letter queue. The scheduler exports the same numbers as Prometheus gauges."""
        from workers import broker
        from workers.queues import queue_stats

        try:
            stats = queue_stats(broker)
        except Exception as exc:  # noqa: BLE001 - any Redis failure: say so, do not 500
            raise Unavailable("Redis is unreachable; queue statistics are not available.") from exc
        return {"queues": [queue.as_dict() for queue in stats], "as_of": datetime.now(UTC)}
