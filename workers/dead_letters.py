"""Dead letters: reading and removing messages in Dramatiq's Redis dead-letter queues.

Dramatiq has no public API for its dead-letter queue, so this one module reads its keys
(`{ns}:{queue}.XQ` sorted set of ids by time of death, `{ns}:{queue}.XQ.msgs` hash of
encoded messages). Nothing else in the code base knows them. The PostgreSQL row
(`dead_lettered`) is the durable record; the Redis message is kept for inspection and
expires after BROKER_DEAD_MESSAGE_TTL_MS.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from db.batches import repository as batches_repo
from db.batches import service as batches_service
from db.core.errors import NotFound
from db.session import unit_of_work
from db.transactions import repository as transactions_repo
from db.transactions.dead_letters import reopen


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    redis_id: str
    queue: str
    actor_name: str
    kwargs: dict
    dead_at: datetime
    retries: int
    error: str

    @property
    def transaction_id(self) -> str | None:
        return self.kwargs.get("transaction_id")


def _keys(broker: RedisBroker, queue: str) -> tuple[str, str]:
    base = f"{broker.namespace}:{queue}.XQ"
    return base, f"{base}.msgs"


def list_dead_letters(
    broker: RedisBroker, queues: list[str] | None = None, limit: int = 1000
) -> list[DeadLetter]:
    letters: list[DeadLetter] = []
    for queue in sorted(queues or broker.get_declared_queues()):
        if queue.endswith(".DQ"):
            continue
        index, messages = _keys(broker, queue)
        entries = broker.client.zrevrange(index, 0, limit - 1, withscores=True)
        if not entries:
            continue
        payloads = broker.client.hmget(messages, [redis_id for redis_id, _ in entries])
        for (redis_id, score), payload in zip(entries, payloads, strict=True):
            if payload is None:
                continue
            message = Message.decode(payload)
            traceback = message.options.get("traceback") or ""
            letters.append(
                DeadLetter(
                    message_id=message.message_id,
                    redis_id=redis_id.decode() if isinstance(redis_id, bytes) else redis_id,
                    queue=queue,
                    actor_name=message.actor_name,
                    kwargs=dict(message.kwargs),
                    dead_at=datetime.fromtimestamp(score / 1000, UTC),
                    retries=int(message.options.get("retries", 0)),
                    error=traceback.strip().splitlines()[-1] if traceback.strip() else "",
                )
            )
    return letters


def with_row_errors(letters: list[DeadLetter]) -> list[DeadLetter]:
    """Fill each transaction letter's error from its row: a message dead-lettered on its
    first failure carries no traceback in Redis, but DeadLetterRecorder wrote the reason
    on the row."""
    ids = {uuid.UUID(letter.transaction_id) for letter in letters if letter.transaction_id}
    if not ids:
        return letters
    with unit_of_work() as uow:
        errors = transactions_repo.last_errors(uow.session, ids)
    return [
        dataclasses.replace(letter, error=errors.get(uuid.UUID(letter.transaction_id)) or letter.error)
        if letter.transaction_id
        else letter
        for letter in letters
    ]


def find(broker: RedisBroker, message_id: str) -> DeadLetter | None:
    return next((letter for letter in list_dead_letters(broker) if letter.message_id == message_id), None)


def remove(broker: RedisBroker, letter: DeadLetter) -> None:
    index, messages = _keys(broker, letter.queue)
    with broker.client.pipeline(transaction=True) as pipe:
        pipe.zrem(index, letter.redis_id)
        pipe.hdel(messages, letter.redis_id)
        pipe.execute()


def requeue(broker: RedisBroker, letter: DeadLetter) -> None:
    """Send the message again with a fresh retry budget, then drop the dead copy."""
    actor = broker.get_actor(letter.actor_name)
    actor.send_with_options(kwargs=letter.kwargs)
    remove(broker, letter)


def retry(broker: RedisBroker, identifier: str, actor=None) -> dict:
    """Retry by Dramatiq message id, or by transaction id when Redis no longer has the
    message (expired or lost): the `dead_lettered` row is enough."""
    from workers.batches import apply_chunk
    from workers.transactions import apply_transaction

    letter = find(broker, identifier)
    if letter is not None and letter.actor_name == apply_chunk.actor_name:
        return retry_batch(broker, uuid.UUID(letter.kwargs["batch_id"]), actor, letter)
    if letter is not None and letter.actor_name != apply_transaction.actor_name:
        requeue(broker, letter)
        return {"message_id": letter.message_id, "actor": letter.actor_name, "requeued": True}

    tx_id = letter.transaction_id if letter is not None else identifier
    try:
        tx_uuid = uuid.UUID(str(tx_id))
    except ValueError:
        raise NotFound("no dead letter or transaction with that id") from None
    if letter is None and _is_batch(tx_uuid):
        return retry_batch(broker, tx_uuid, actor, None)
    with unit_of_work() as uow:
        tx = reopen(uow.session, tx_uuid, actor)
        uow.enqueue(apply_transaction, transaction_id=str(tx.id))
    if letter is not None:
        remove(broker, letter)
    return {
        "message_id": letter.message_id if letter else None,
        "transaction_id": str(tx_uuid),
        "requeued": True,
    }


def _is_batch(identifier: uuid.UUID) -> bool:
    with unit_of_work() as uow:
        return batches_repo.get(uow.session, identifier) is not None


def retry_batch(broker: RedisBroker, batch_id: uuid.UUID, actor, letter: DeadLetter | None) -> dict:
    """Retry a batch whose chunk was dead-lettered (by the message's id, or the batch's
    when Redis no longer has it): its dead-lettered lines go back to `pending` and the
    batch resumes at its cursor. Re-sending the old message alone would no-op, the
    batch being over. `requeued` is true only when a chunk message was actually sent."""
    from workers.batches import apply_chunk

    with unit_of_work() as uow:
        batch, reopened = batches_service.reopen_dead_lettered(uow.session, batch_id, actor)
        requeued = batch.status == "processing"
        if requeued:
            uow.enqueue(apply_chunk, batch_id=str(batch.id), start_line=batch.next_line)
    if letter is not None and requeued:
        remove(broker, letter)
    return {
        "message_id": letter.message_id if letter else None,
        "actor": apply_chunk.actor_name,
        "batch_id": str(batch_id),
        "reopened_lines": reopened,
        "requeued": requeued,
    }
