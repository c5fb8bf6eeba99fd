"""Liveness, readiness and metrics, outside /api/v1 (probes and Prometheus call them)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from db.migrate import current_revisions, head_revisions
from db.ops.metrics import WEB, check_access, exposition
from db.session import get_engine

blp = Blueprint("ops", __name__)


@blp.get("/healthz")
def healthz():
    """Liveness: the process answers. No dependencies, so a DB outage never restarts us."""
    return jsonify({"status": "ok"})


@blp.get("/readyz")
def readyz():
    """Readiness: PostgreSQL reachable with migrations at head, Redis reachable."""
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
def metrics():
    """Prometheus text of the web tier only (every gunicorn process, `process_*` of the
    group, `ledgerq_build_info`), behind the optional token / allowlist."""
    settings = current_app.config["LEDGERQ_SETTINGS"]
    # The direct peer, not a proxy's X-Forwarded-For: the allowlist names scrapers.
    peer = request.environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR", request.remote_addr)
    denied = check_access(settings, request.headers.get("Authorization"), peer)
    if denied:
        headers = {"WWW-Authenticate": 'Bearer realm="metrics"'} if denied == 401 else {}
        return Response("metrics: access denied\n", denied, headers, mimetype="text/plain")
    body, content_type = exposition(WEB, settings)
    return body, 200, {"Content-Type": content_type}
