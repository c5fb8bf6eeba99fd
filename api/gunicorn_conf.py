"""gunicorn settings for the `web` process (Procfile), from the one settings object."""

from db.config import get_settings

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
