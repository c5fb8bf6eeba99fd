"""JSON logs carry the exception itself (type, message, frames), not `"exc_info": true`."""

from __future__ import annotations

import json

from db.core.config import get_settings
from db.core.logs import configure_logging, get_logger


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_logged_exception_keeps_its_type_message_and_traceback(capfd):
    configure_logging(get_settings().model_copy(update={"log_format": "json"}))
    password = "local-variable-secret"  # a frame's locals never reach the log
    try:
        {}["missing-key"]
    except KeyError:
        get_logger("test").exception("http.unhandled_error")
    output = capfd.readouterr().err
    assert password not in output
    (record,) = [r for r in _json_lines(output) if r.get("event") == "http.unhandled_error"]
    assert "exc_info" not in record
    (raised,) = record["exception"]
    assert raised["exc_type"] == "KeyError" and "missing-key" in raised["exc_value"]
    assert any(
        frame["name"] == "test_a_logged_exception_keeps_its_type_message_and_traceback"
        for frame in raised["frames"]
    )


def test_a_foreign_library_exception_is_rendered_too(capfd):
    import logging

    configure_logging(get_settings().model_copy(update={"log_format": "json"}))
    try:
        raise RuntimeError("from the standard library logger")
    except RuntimeError:
        logging.getLogger("dramatiq.worker").exception("message failed")
    (record,) = [r for r in _json_lines(capfd.readouterr().err) if r.get("event") == "message failed"]
    assert record["exception"][0]["exc_type"] == "RuntimeError"
