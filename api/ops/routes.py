"""Liveness, readiness and metrics, outside /api/v1 (probes and Prometheus call them)."""

from __future__ import annotations

from flask import Response, current_app, jsonify, request

from api.extensions import Blueprint
from db.migrate import current_revisions, head_revisions
from db.ops.metrics import WEB, check_access, exposition
from db.session import get_engine

blp = Blueprint("ops", __name__, description="Probes and Prometheus (no authentication; outside /api/v1)")

_PROBE_BODY = {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}
_READINESS_BODY = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ready", "not_ready"]},
        "checks": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "`ok`, or why not: `unreachable: <error>`, `behind: at [...]`",
        },
    },
    "required": ["status", "checks"],
}


def _json(schema: dict, example: dict) -> dict:
    return {"application/json": {"schema": schema, "example": example}}


@blp.get("/healthz")
@blp.doc(responses={"200": {"description": "alive", "content": _json(_PROBE_BODY, {"status": "ok"})}})
def healthz():
    """Liveness: the process answers.

    No dependencies, so a database outage never makes an orchestrator restart the web
    tier. Point Kubernetes' `livenessProbe` (and load balancers' health checks) here."""
    return jsonify({"status": "ok"})


@blp.get("/readyz")
@blp.doc(
    responses={
        "200": {
            "description": "ready",
            "content": _json(
                _READINESS_BODY,
                {"status": "ready", "checks": {"postgres": "ok", "migrations": "ok", "redis": "ok"}},
            ),
        },
        "503": {
            "description": "not ready: take this instance out of rotation",
            "content": _json(
                _READINESS_BODY,
                {
                    "status": "not_ready",
                    "checks": {"postgres": "ok", "migrations": "ok", "redis": "unreachable: ConnectionError"},
                },
            ),
        },
    }
)
def readyz():
    """Readiness: PostgreSQL reachable with migrations at head, Redis reachable.

    503 with the failing check named while any is not `ok`; `readinessProbe` and the
    compose healthcheck use it, so traffic only reaches an instance that can serve it."""
    settings = current_app.config["LEDGERQ_SETTINGS"]
    checks: dict[str, str] = {}
    try:
        with get_engine(settings).connect() as connection:
            current = current_revisions(connection)
        checks["postgres"] = "ok"
        checks["migrations"] = "ok" if current == head_revisions() else f"behind: at {sorted(current)}"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["postgres"] = f"unreachable: {type(exc).__name__}"
    try:
        from workers import broker

        broker.client.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return jsonify({"status": "ready" if ready else "not_ready", "checks": checks}), 200 if ready else 503


@blp.get("/metrics")
@blp.doc(
    responses={
        "200": {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        "401": {"description": "LEDGERQ_METRICS_TOKEN is set and the bearer token is missing or wrong"},
        "403": {"description": "the peer is not in LEDGERQ_METRICS_ALLOW"},
    }
)
def metrics():
    """Prometheus metrics of the web tier.

    Every gunicorn process's counters, `process_*` of the group and `ledgerq_build_info`;
    behind the optional bearer token and network allowlist (deployment/README.md)."""
    settings = current_app.config["LEDGERQ_SETTINGS"]
    # The direct peer, not a proxy's X-Forwarded-For: the allowlist names scrapers.
    peer = request.environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR", request.remote_addr)
    denied = check_access(settings, request.headers.get("Authorization"), peer)
    if denied:
        headers = {"WWW-Authenticate": 'Bearer realm="metrics"'} if denied == 401 else {}
        return Response("metrics: access denied\n", denied, headers, mimetype="text/plain")
    body, content_type = exposition(WEB, settings)
    return body, 200, {"Content-Type": content_type}
