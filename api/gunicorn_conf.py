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
# gevent: every request is a greenlet, so a parked long-poll costs no OS thread and
# 200 of them leave other clients' latency alone (README, Performance: longpoll).
# The worker monkey-patches before it loads the app, so psycopg picks its cooperative
# wait function (checked in post_worker_init).
worker_class = _settings.web_worker_class
worker_connections = _settings.web_connections
threads = _settings.web_threads
# Long-polls last up to LEDGERQ_LONG_POLL_MAX_SECONDS; leave headroom before gunicorn
# decides a worker is stuck.
timeout = _settings.long_poll_max_s + 30
graceful_timeout = 30
accesslog = None  # the app logs each request with its request id


def post_worker_init(worker):
    from db.core.logs import get_logger
    from db.ops.notifications import listener_for

    if worker_class == "gevent":
        import psycopg.waiting

        if psycopg.waiting.wait is getattr(psycopg.waiting, "wait_c", None):
            # Imported before gevent patched select: every query would block the worker.
            get_logger(__name__).error("web.psycopg_not_cooperative")
            raise SystemExit(3)
    # Listen from the start: the first long-poll is woken by NOTIFY like every other,
    # and the auth-state cache is usable from the first request.
    listener_for(_settings.database_url).start()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
