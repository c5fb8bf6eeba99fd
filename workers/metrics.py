"""The worker group's Prometheus endpoint.

Dramatiq's Prometheus middleware keeps its counters (`dramatiq_*`, in the group's
multiprocess directory, beside ours); its exposition fork is replaced by one that
serves this process kind only (db/ops/metrics.py: the group's `process_*`,
`ledgerq_build_info`, the optional token / allowlist) on `WORKER_METRICS_PORT`.

Each group needs a port of its own (systemd: `ledgerq-worker@PORT`; compose and
Kubernetes: one group per container). A port already taken is logged as an error
naming the fix, and the group keeps working: applying transfers matters more.
"""

from __future__ import annotations

from dramatiq.middleware.prometheus import Prometheus

from db.core.config import get_settings
from db.core.logs import get_logger
from db.ops.metrics import WORKER, make_server

log = get_logger(__name__)


class WorkerMetrics(Prometheus):
    @property
    def forks(self):
        return [serve_worker_metrics]


def serve_worker_metrics() -> int:
    settings = get_settings()
    host = "127.0.0.1" if settings.web_host == "127.0.0.1" else "0.0.0.0"
    port = settings.worker_metrics_port
    try:
        server = make_server(WORKER, settings, host, port)
    except OSError as exc:
        log.error(
            "worker.metrics_unavailable",
            port=port,
            error=str(exc),
            hint="give each worker group on a host its own WORKER_METRICS_PORT (ledgerq worker --metrics-port)",
        )
        return 1
    log.info("worker.metrics_listening", host=host, port=port)
    server.serve_forever()
    return 0
