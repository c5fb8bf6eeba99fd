"""CORS: an explicit allowlist of browser origins from LEDGERQ_CORS_ORIGINS; none by
default, in which case no CORS header is ever sent and browsers refuse cross-origin
calls. Tokens travel in the Authorization header, never in cookies, so credentials
mode stays off."""

from __future__ import annotations

from flask import Flask
from flask_cors import CORS

from db.core.config import Settings

ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"]
EXPOSED_HEADERS = ["Location", "Retry-After", "X-Request-ID", "Idempotent-Replayed"]


def init_app(app: Flask, settings: Settings) -> None:
    if not settings.cors_origins:
        return
    CORS(
        app,
        resources={r"/api/v1/*": {"origins": settings.cors_origins}},
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        methods=["GET", "POST", "PUT", "DELETE"],
        supports_credentials=False,
        max_age=600,
    )
