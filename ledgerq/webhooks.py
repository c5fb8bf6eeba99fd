"""Signing and verifying ledgerq webhooks (Stripe's scheme).

Every delivery carries `Ledgerq-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
"<t>.<raw body>")>`. A receiver verifies the *raw* body (before parsing JSON) and rejects
old timestamps, so a captured request cannot be replayed later:

    from flask import Flask, abort, request
    from ledgerq.webhooks import verify_signature

    app = Flask(__name__)
    SECRET = "whsec_..."  # shown once by POST /api/v1/webhooks

    @app.post("/ledgerq")
    def ledgerq_event():
        if not verify_signature(SECRET, request.headers.get("Ledgerq-Signature", ""), request.get_data()):
            abort(400)
        event = request.get_json()
        ...  # deduplicate by event["id"]: delivery is at least once
        return "", 204

The server uses `sign` from this module, so both sides share one implementation.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Ledgerq-Signature"


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `Ledgerq-Signature` header value for `body`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify_signature(
    secret: str, header: str, body: bytes, tolerance: int = 300, now: float | None = None
) -> bool:
    """True when `header` is a valid signature of `body` made with `secret` no more than
    `tolerance` seconds from now. Any `v1` entry may match (several appear while a
    secret is being rotated); comparison is constant-time."""
    timestamp, candidates = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if tolerance and abs(current - timestamp) > tolerance:
        return False
    expected = _digest(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
