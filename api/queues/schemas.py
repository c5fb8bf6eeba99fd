from __future__ import annotations

from marshmallow import Schema, fields


class QueueStatsSchema(Schema):
    name = fields.String()
    depth = fields.Integer(metadata={"description": "messages waiting to be fetched"})
    in_flight = fields.Integer(metadata={"description": "fetched by a worker, not yet acknowledged"})
    delayed = fields.Integer(metadata={"description": "delayed messages (retry backoff, scheduled sends)"})
    dead_letters = fields.Integer(metadata={"description": "messages in the dead-letter queue"})


class QueuesSchema(Schema):
    queues = fields.List(fields.Nested(QueueStatsSchema))
    as_of = fields.DateTime(format="iso")
