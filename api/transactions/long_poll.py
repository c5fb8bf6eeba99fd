"""`GET /transactions/{id}?wait=N`: wait for a final status at no thread's cost.

- The wait is a `FinalityHub` event (db/transactions/finality.py), woken by the NOTIFY
  of the commit that finalised the row; the pooled connection is given back while
  waiting. Under gevent (the default web worker) a waiter is a parked greenlet.
- One user's concurrent long-polls are capped (`LEDGERQ_LONG_POLLS_PER_USER`) across
  every process: a sorted set per user in Redis, one member per poll scored by when it
  must have ended, so a crashed process's entries expire on their own. Above the cap:
  429 `rate_limited` with `Retry-After`. If Redis is unreachable the poll is served
  (rate limiting never takes the API down), as the rate limiter does.
"""

from __future__ import annotations

import time
import uuid

import redis
from flask import Flask, current_app
from sqlalchemy.orm import Session

from db.core.config import Settings
from db.core.errors import RateLimited
from db.core.logs import get_logger
from db.models import FINAL_STATUSES
from db.transactions import repository as transactions_repo
from db.transactions.finality import hub_for

log = get_logger(__name__)

EXTENSION_KEY = "ledgerq_long_poll_redis"
# Re-read the row this often even when listening: a lost notification (listener
# reconnecting) then costs at most this long, never the whole wait.
RECHECK_S = 5.0
RECHECK_NOT_LISTENING_S = 0.5

# KEYS[1] the user's set; ARGV: now, ends_at, member, cap. 1 = admitted, 0 = over the cap.
_ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(ARGV[2] - ARGV[1]) + 1)
return 1
"""


def init_app(app: Flask, settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=0.5, socket_timeout=0.5)
    app.extensions[EXTENSION_KEY] = (client, client.register_script(_ADMIT))


class _Slot:
    def __init__(self, settings: Settings, user_id: uuid.UUID, seconds: float) -> None:
        self.key = f"{settings.redis_namespace}:longpolls:{user_id}"
        self.member = uuid.uuid4().hex
        self.client, self.admit = current_app.extensions[EXTENSION_KEY]
        now = time.time()
        try:
            admitted = self.admit(
                keys=[self.key], args=[now, now + seconds + 5, self.member, settings.long_poll_per_user]
            )
        except redis.RedisError as error:
            log.warning("transactions.long_poll_cap_unavailable", error=str(error)[:200])
            admitted, self.client = 1, None
        if not admitted:
            retry_after = 1
            raise RateLimited(
                f"At most {settings.long_poll_per_user} concurrent long-polls per user; "
                f"retry in {retry_after} s or poll without ?wait.",
                {"limit": f"{settings.long_poll_per_user} concurrent long-polls", "retry_after": retry_after},
            )

    def release(self) -> None:
        if self.client is None:
            return
        try:
            self.client.zrem(self.key, self.member)
        except redis.RedisError:
            pass  # the entry expires with its score


def wait_final(
    session: Session,
    transaction_id: uuid.UUID,
    status: str,
    *,
    user_id: uuid.UUID,
    seconds: float,
    settings: Settings,
) -> bool:
    """Return once the transaction (last seen in `status`) is final or `seconds` passed.
    True when it waited, so the caller reads the row again; False (and nothing read) if
    there was nothing to wait for."""
    if seconds <= 0 or status in FINAL_STATUSES:
        return False
    slot = _Slot(settings, user_id, seconds)
    deadline = time.monotonic() + seconds
    hub = hub_for(settings.database_url)
    try:
        with hub.watch(transaction_id) as finalised:
            while True:
                # Registered before this read: a commit from here on sets `finalised`.
                current = transactions_repo.status_of(session, transaction_id)
                remaining = deadline - time.monotonic()
                if current in FINAL_STATUSES or remaining <= 0:
                    return True
                session.rollback()  # give the connection back while parked
                recheck = RECHECK_S if hub.is_listening else RECHECK_NOT_LISTENING_S
                finalised.wait(min(remaining, recheck))
                finalised.clear()
    finally:
        slot.release()
