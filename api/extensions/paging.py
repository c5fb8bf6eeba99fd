"""Page size policy shared by every list endpoint (capped, see LEDGERQ_PAGE_SIZE_MAX)."""

from __future__ import annotations

from flask import current_app


def capped_limit(requested: int) -> int:
    return min(requested, current_app.config["LEDGERQ_SETTINGS"].page_size_max)
