"""The circuit breaker of one endpoint (a subscription row, locked by the caller).

closed    -> deliveries flow, up to `webhook_max_in_flight` at a time;
             `webhook_breaker_threshold` consecutive failures open it.
open      -> nothing is sent until `circuit_retry_at`; its deliveries wait (their retry
             window keeps running), so a dead endpoint costs no worker time.
half_open -> one probe delivery is in flight: success closes the circuit, failure opens
             it again for twice as long (up to `webhook_breaker_max_cooldown_s`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from db.core.config import Settings
from db.models import WebhookSubscription


def slots(sub: WebhookSubscription, in_flight: int, now: datetime, settings: Settings) -> int:
    """How many more deliveries may be sent to this endpoint right now."""
    if sub.circuit_state == "closed":
        return max(0, settings.webhook_max_in_flight - in_flight)
    if sub.circuit_state == "open" and (sub.circuit_retry_at is None or sub.circuit_retry_at <= now):
        return 1 if in_flight == 0 else 0
    if sub.circuit_state == "half_open":
        return 1 if in_flight == 0 else 0  # the probe was lost (lease expired): send another
    return 0


def on_claim(sub: WebhookSubscription) -> None:
    if sub.circuit_state == "open":
        sub.circuit_state = "half_open"


def on_success(sub: WebhookSubscription) -> None:
    sub.circuit_state = "closed"
    sub.consecutive_failures = 0
    sub.circuit_opened_count = 0
    sub.circuit_retry_at = None


def on_failure(sub: WebhookSubscription, now: datetime, settings: Settings) -> bool:
    """Count a failed attempt; True when this failure opened the circuit."""
    sub.consecutive_failures += 1
    probing = sub.circuit_state == "half_open"
    if not probing and (
        sub.circuit_state == "open" or sub.consecutive_failures < settings.webhook_breaker_threshold
    ):
        return False
    cooldown = min(
        settings.webhook_breaker_max_cooldown_s,
        settings.webhook_breaker_cooldown_s * 2**sub.circuit_opened_count,
    )
    sub.circuit_state = "open"
    sub.circuit_opened_count += 1
    sub.circuit_retry_at = now + timedelta(seconds=cooldown)
    return True
