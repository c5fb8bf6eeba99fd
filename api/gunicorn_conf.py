"""gunicorn settings for the `web` process (Procfile), from the one settings object."""

import os

from db.ops.metrics_dirs import fresh_multiprocess_dir

# Every gunicorn worker is a process with its own counters: Prometheus' multiprocess
# mode aggregates them so /metrics shows the whole web tier. Must be set before the
# app (and prometheus_client) is imported in the workers.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(fresh_multiprocess_dir("ledgerq-web-metrics-"))
# This master and its workers are one group: /metrics sums their `process_*`.
os.environ["LEDGERQ_METRICS_GROUP_PID"] = str(os.getpid())

from api.gunicorn_logging import StructuredLogger  # noqa: E402
from db.core.config import get_settings  # noqa: E402

_settings = get_settings()

logger_class = StructuredLogger  # gunicorn's own lines in the app's format

bind = f"{_settings.web_host}:{_settings.port}"
workers = _settings.web_workers
threads = _settings.web_threads
worker_class = "gthread"
# Long-polls last up to LEDGERQ_LONG_POLL_MAX_SECONDS; leave headroom before gunicorn
# decides a worker is stuck.
timeout = _settings.long_poll_max_s + 30
graceful_timeout = 30
accesslog = None  # the app logs each request with its request id


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
