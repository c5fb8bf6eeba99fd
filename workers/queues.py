"""Queue statistics for operators (`GET /admin/queues`, the scheduler's gauges).

Read-only use of the Redis broker's key layout (dramatiq/brokers/redis/dispatch.lua);
nothing here writes to Redis, and sending still goes through Dramatiq's public API:
- `{ns}:{queue}`           list of message ids waiting to be fetched      -> `depth`
- `{ns}:{queue}.msgs`      hash of every unacknowledged message; minus the waiting
                           ones, those fetched by a worker                 -> `in_flight`
- `{ns}:{queue}.DQ.msgs`   delayed messages (retry backoff, `delay=`), whether still in
                           Redis or held by a worker until their eta       -> `delayed`
- `{ns}:{queue}.XQ`        sorted set of dead-lettered message ids         -> `dead_letters`
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from dramatiq.brokers.redis import RedisBroker


@dataclass(frozen=True)
class QueueStats:
    name: str
    depth: int
    in_flight: int
    delayed: int
    dead_letters: int

    def as_dict(self) -> dict:
        return asdict(self)


def queue_stats(broker: RedisBroker) -> list[QueueStats]:
    """One entry per declared queue (every actor module is imported with `workers`)."""
    names = sorted(broker.get_declared_queues())
    prefix = broker.namespace
    pipe = broker.client.pipeline(transaction=False)
    for name in names:
        key = f"{prefix}:{name}"
        pipe.llen(key)
        pipe.hlen(f"{key}.msgs")
        pipe.hlen(f"{key}.DQ.msgs")
        pipe.zcard(f"{key}.XQ")
    values = pipe.execute()
    stats = []
    for index, name in enumerate(names):
        waiting, unacked, delayed, dead = values[index * 4 : index * 4 + 4]
        stats.append(
            QueueStats(
                name=name,
                depth=int(waiting),
                in_flight=max(0, int(unacked) - int(waiting)),
                delayed=int(delayed),
                dead_letters=int(dead),
            )
        )
    return stats
