"""Per-request context: the request id (echoed or generated, bound into every log line
and carried into the worker's message), access logs, trusted proxies, and security
headers (nosniff, no referrer, no framing, no-store on API responses, HSTS over HTTPS)."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from flask import Flask, g, request
from prometheus_client import Counter, Histogram
from werkzeug.middleware.proxy_fix import ProxyFix

from db.core.errors import InvalidJson
from db.core.logs import get_logger

log = get_logger("api.access")

REQUESTS = Counter("ledgerq_http_requests_total", "HTTP requests", ["method", "endpoint", "status"])
LATENCY = Histogram("ledgerq_http_request_seconds", "HTTP request latency", ["endpoint"])

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}


_NOT_SECRET_PATHS = ("/healthz", "/metrics", "/api/v1/openapi.json")


def init_app(app: Flask) -> None:
    settings = app.config["LEDGERQ_SETTINGS"]
    if settings.proxy_hops:
        # Only trust X-Forwarded-* from the proxies we run: the client IP feeds the rate
        # limits and the scheme decides HSTS, so a client must not be able to forge them.
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    hsts = f"max-age={settings.hsts_max_age_s}; includeSubDomains" if settings.hsts_max_age_s else None

    @app.before_request
    def _bind_request_id():
        supplied = request.headers.get("X-Request-ID", "")
        g.request_id = supplied if _VALID_REQUEST_ID.match(supplied) else str(uuid.uuid4())
        g.started = time.perf_counter()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=g.request_id)

    @app.before_request
    def _require_json_bodies():
        # webargs would read a non-JSON body as "no fields" and answer 422; the contract
        # says a body that is not JSON is a 400 invalid_json.
        if request.method in _BODY_METHODS and request.content_length and not request.is_json:
            if not request.mimetype.startswith("multipart/"):
                raise InvalidJson("Content-Type must be application/json.")

    @app.after_request
    def _headers_and_access_log(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        # Balances, tokens and user data must never sit in a shared or browser cache:
        # every authenticated response, and every /api/v1 one (login answers carry tokens).
        if request.headers.get("Authorization") or (
            request.path.startswith("/api/v1/") and request.path not in _NOT_SECRET_PATHS
        ):
            response.headers["Cache-Control"] = "no-store"
        if hsts and request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", hsts)
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        # The URL rule, not the path: ids must not explode the label cardinality.
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        LATENCY.labels(endpoint).observe(elapsed)
        if request.path not in ("/healthz", "/metrics"):
            log.info(
                "http.request",
                method=request.method,
                path=request.path,
                status=response.status_code,
                ms=round(elapsed * 1000, 2),
            )
        return response

    @app.teardown_request
    def _unbind(_exc):
        structlog.contextvars.clear_contextvars()
