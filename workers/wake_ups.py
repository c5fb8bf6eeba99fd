"""Coalesced wake-ups of the transfer appliers: one Redis flag, "a wake-up is queued and
no worker has started it yet".

A worker claims every never-tried pending transfer (in groups, until a claim comes back
short), so while a wake-up waits in the queue, sending another one for a newly committed
row adds nothing but a Redis round trip and a message for a worker to fetch, decode and
ack. A sender therefore sends only if it sets the flag (SET NX); a wake-up clears it
(DEL) *before* its first claim.

Why no committed row is left waiting: a sender checks the flag after its row committed.
If the SET fails, the flag was set by the latest sender X, whose message had not started
when the SET failed (its start clears the flag, and nothing set it again since). So X's
worker clears the flag, and then claims, after this row committed: its claims see the
row. The flag expires after `TTL_MS`, so a sender that set it and died before sending
(or a message stuck in a killed worker's prefetch buffer) blocks the others for at most
that long; the stale-pending sweeper covers what no later wake-up does (Redis down).

The flag is a key of this project's own, never one of Dramatiq's; sending goes through
the actor's public API. Brokers without a Redis client (Dramatiq's StubBroker) do not
coalesce: every wake-up is sent.
"""

from __future__ import annotations

from typing import Any

from db.core.config import get_settings
from db.core.logs import get_logger

log = get_logger(__name__)

# Long enough to cover a wake-up's wait in the queue under load (each one saved is a
# message not fetched), short enough that a lost one delays the rows behind it by no
# more than this under traffic.
TTL_MS = 1000


def _client(actor: Any) -> Any | None:
    return getattr(actor.broker, "client", None)


def _key() -> str:
    return f"{get_settings().redis_namespace}:transactions.wake-up-queued"


def claim_sending(actor: Any) -> bool:
    """True when the caller must send its wake-up (it set the flag, or there is no flag
    to set); False when a queued, unstarted wake-up will claim the caller's row."""
    client = _client(actor)
    if client is None:
        return True
    return bool(client.set(_key(), b"1", nx=True, px=TTL_MS))


def queued(actor: Any) -> bool:
    """Whether senders are coalescing onto a queued wake-up right now (the flag is set):
    only then is a woken worker's linger worth its wait. False without Redis."""
    client = _client(actor)
    if client is None:
        return False
    try:
        return bool(client.exists(_key()))
    except Exception:  # noqa: BLE001 - no linger, the claims still run
        return False


def started(actor: Any) -> None:
    """A wake-up has begun: from now on a new row's sender sends its own. Called before
    the worker's first claim. A failure is logged, not raised: the flag then expires."""
    client = _client(actor)
    if client is None:
        return
    try:
        client.delete(_key())
    except Exception as error:  # noqa: BLE001 - the claims below still run
        log.warning("transactions.wake_flag_not_cleared", error=str(error)[:200])
