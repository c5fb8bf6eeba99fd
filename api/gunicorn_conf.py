"""gunicorn settings for the `web` process (Procfile), from the one settings object."""

import os
import shutil
import tempfile
from pathlib import Path

# Every gunicorn worker is a process with its own counters: Prometheus' multiprocess
# mode aggregates them so /metrics shows the whole web tier. Must be set before the
# app (and prometheus_client) is imported in the workers.
for _stale in Path(tempfile.gettempdir()).glob("ledgerq-web-metrics-*"):
    _pid = _stale.name.rsplit("-", 1)[-1]
    if _pid.isdigit() and not os.path.exists(f"/proc/{_pid}"):
        shutil.rmtree(_stale, ignore_errors=True)
_metrics_dir = Path(tempfile.gettempdir()) / f"ledgerq-web-metrics-{os.getpid()}"
shutil.rmtree(_metrics_dir, ignore_errors=True)
_metrics_dir.mkdir(parents=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)

from db.config import get_settings  # noqa: E402

_settings = get_settings()

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
