"""gunicorn's own lines (booting, worker timeouts, signals) through the app's logging:
the same JSON or console format as every other line of the stream, not gunicorn's
`[date] [pid] [INFO]` lines in between."""

from __future__ import annotations

from gunicorn.glogging import Logger

from db.core.config import get_settings
from db.core.logs import configure_logging


class StructuredLogger(Logger):
    def setup(self, cfg):
        super().setup(cfg)
        configure_logging(get_settings())  # drops the handlers gunicorn just added
