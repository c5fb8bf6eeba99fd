"""One delivery attempt: load, POST outside any transaction, record the outcome.

A 2xx answer within `webhook_timeout_s` (10 s) is delivered. Anything else (another
status, a timeout, a refused connection, a URL the SSRF guard refuses now) is a failed
attempt: retried with exponential backoff and jitter until `webhook_retry_window_s`
after the delivery's window started, then `failed` (listed, retryable by hand).
Redirects are never followed (a 3xx is a failure).

The request goes to the address the SSRF guard just vetted, with TLS verified for the
URL's host name, so DNS cannot be asked twice and answer differently.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import urllib3
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.core.config import Settings
from db.models import Event, WebhookDelivery, WebhookSubscription
from db.webhooks import breaker, dispatch, secrets, ssrf
from ledgerq.webhooks import SIGNATURE_HEADER, sign

USER_AGENT = "ledgerq-webhooks/1"
MAX_ERROR = 500


@dataclass(frozen=True)
class Request:
    delivery_id: uuid.UUID
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    latency_ms: int
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Recorded:
    outcome: str  # delivered | retrying | failed | skipped
    next_ids: list[uuid.UUID]  # the same endpoint's next due deliveries, claimed
    circuit_opened: bool = False


def event_body(event: Event) -> bytes:
    """The event JSON exactly as the feed shows it, as compact bytes (what is signed)."""
    document = {
        "id": str(event.id),
        "type": event.type,
        "created_at": event.created_at.isoformat(),
        "data": event.data,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def prepare(session: Session, delivery_id: uuid.UUID, settings: Settings) -> Request | None:
    """The signed request of a claimed delivery; None when there is nothing to send (a
    duplicate message, or the subscription was deleted: then the delivery is `failed`)."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.status != "delivering":
        return None
    sub = session.get(WebhookSubscription, delivery.subscription_id)
    event = session.scalars(select(Event).where(Event.id == delivery.event_id)).one_or_none()
    if sub is None or sub.deleted_at is not None or event is None:
        delivery.status, delivery.lease_until = "failed", None
        delivery.last_error = "the subscription was deleted" if event is not None else "the event was pruned"
        return None
    body = event_body(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Ledgerq-Event-Id": str(event.id),
        "Ledgerq-Event-Type": event.type,
        "Ledgerq-Delivery-Id": str(delivery.id),
        SIGNATURE_HEADER: sign(secrets.decrypt(settings, sub.secret_encrypted), body),
    }
    return Request(delivery.id, sub.url, headers, body)


def send(request: Request, settings: Settings) -> Answer:
    """POST once; never raises. The SSRF guard runs first, on a fresh DNS answer."""
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = ssrf.resolve(request.url, allow_private=settings.webhook_allow_private_hosts)
    except ssrf.UnsafeUrl as refused:
        return Answer(None, elapsed(), f"refused by the SSRF guard: {refused}"[:MAX_ERROR])
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    timeout = urllib3.Timeout(total=settings.webhook_timeout_s)
    if target.scheme == "https":
        pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            timeout=timeout,
            retries=False,
        )
    else:
        pool = urllib3.HTTPConnectionPool(target.address, target.port, timeout=timeout, retries=False)
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=request.body,
            headers={**request.headers, "Host": host_header},
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            response.read(64 * 1024)  # the answer's body does not matter; do not wait for a huge one
        finally:
            response.release_conn()
    except Exception as exc:  # noqa: BLE001 - every network failure is a failed attempt
        return Answer(None, elapsed(), f"{type(exc).__name__}: {exc}"[:MAX_ERROR])
    finally:
        pool.close()
    latency = elapsed()
    if latency > settings.webhook_timeout_s * 1000:
        return Answer(
            response.status, latency, f"answered after {latency} ms (limit {settings.webhook_timeout_s} s)"
        )
    return Answer(response.status, latency, None)


def next_delay_s(attempts: int, settings: Settings, rng: random.Random | None = None) -> float:
    """Backoff after `attempts` failed attempts: base * 2^(attempts-1), capped, with
    jitter in [0.5, 1] so endpoints that failed together are not retried together."""
    raw = min(settings.webhook_retry_max_delay_s, settings.webhook_retry_base_s * 2 ** max(0, attempts - 1))
    return raw * (0.5 + 0.5 * (rng or random).random())


def record(session: Session, delivery_id: uuid.UUID, answer: Answer, settings: Settings) -> Recorded:
    """Book the attempt on the delivery and the endpoint's breaker (endpoint row locked
    first, the lock order of `dispatch.claim_due`), then claim its next due deliveries so
    a healthy endpoint is kept busy without waiting for the next dispatch tick."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        return Recorded("skipped", [])
    sub = session.scalars(
        select(WebhookSubscription)
        .where(WebhookSubscription.id == delivery.subscription_id)
        .with_for_update()
    ).one()
    delivery = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update()
    ).one()
    if delivery.status != "delivering":
        return Recorded("skipped", [])  # a manual retry or an expired lease took it over
    now: datetime = session.scalar(select(func.now()))  # type: ignore[assignment]
    delivery.attempts += 1
    delivery.last_status_code = answer.status_code
    delivery.last_latency_ms = answer.latency_ms
    delivery.last_error = answer.error if not answer.ok else None
    if answer.error is None and not answer.ok:
        delivery.last_error = f"HTTP {answer.status_code}"
    delivery.last_attempt_at = now
    delivery.lease_until = None
    opened = False
    if answer.ok:
        delivery.status, delivery.delivered_at = "delivered", now
        breaker.on_success(sub)
        outcome = "delivered"
    else:
        opened = breaker.on_failure(sub, now, settings)
        if now - delivery.window_started_at >= timedelta(seconds=settings.webhook_retry_window_s):
            delivery.status, outcome = "failed", "failed"
        else:
            delivery.status, outcome = "pending", "retrying"
            delivery.next_attempt_at = now + timedelta(seconds=next_delay_s(delivery.attempts, settings))
    session.flush()
    next_ids = [] if sub.deleted_at is not None else dispatch.claim_for(session, sub, now, settings)
    return Recorded(outcome, next_ids, opened)
