"""Log lines: JSON with the traceback as data in production, a readable console format on
a terminal in development, and gunicorn's own lines in the same stream and format."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

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


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def stderr(monkeypatch):
    """A fresh stderr the next configure_logging writes to; the suite's set-up after."""

    def use(stream):
        monkeypatch.setattr(sys, "stderr", stream)
        return stream

    yield use
    monkeypatch.undo()
    configure_logging(get_settings())


def _configure(**settings):
    configure_logging(get_settings().model_copy(update=settings))


def _boom():
    raise ValueError("the ledger says no")


def test_json_keeps_the_traceback_as_data(stderr):
    out = stderr(io.StringIO())
    _configure(log_format="json")
    try:
        _boom()
    except ValueError:
        get_logger("test").exception("ledger.unexpected", transaction_id="t-1")
    line = json.loads(out.getvalue().strip().splitlines()[-1])
    assert (
        line["event"] == "ledger.unexpected" and line["level"] == "error" and line["transaction_id"] == "t-1"
    )
    (exception,) = line["exception"]
    assert exception["exc_type"] == "ValueError" and exception["exc_value"] == "the ledger says no"
    assert [frame["name"] for frame in exception["frames"]][-1] == "_boom"


def test_stdlib_exceptions_keep_the_traceback_too(stderr):
    out = stderr(io.StringIO())
    _configure(log_format="json")
    try:
        _boom()
    except ValueError:
        logging.getLogger("some.library").exception("it broke")
    line = json.loads(out.getvalue().strip().splitlines()[-1])
    assert line["event"] == "it broke" and line["exception"][0]["exc_type"] == "ValueError"


def test_production_is_json_even_on_a_terminal(stderr):
    out = stderr(_Terminal())
    _configure(log_format="auto", env="production", jwt_secret="x" * 48)
    get_logger("test").info("ledger.started", workers=2)
    assert json.loads(out.getvalue().strip().splitlines()[-1])["event"] == "ledger.started"


def test_development_on_a_terminal_is_readable_console_lines(stderr):
    out = stderr(_Terminal())
    _configure(log_format="auto", env="development")
    get_logger("test").info("ledger.started", workers=2)
    line = out.getvalue().strip().splitlines()[-1]
    assert "ledger.started" in line and "workers" in line and "2" in line
    with pytest.raises(ValueError):
        json.loads(line)


def test_development_into_a_pipe_is_json(stderr):
    out = stderr(io.StringIO())
    _configure(log_format="auto", env="development")
    get_logger("test").info("ledger.started")
    assert json.loads(out.getvalue().strip().splitlines()[-1])["event"] == "ledger.started"


def test_gunicorn_lines_share_the_format(stderr):
    from gunicorn.config import Config

    from api.gunicorn_logging import StructuredLogger

    out = stderr(io.StringIO())
    gunicorn_log = StructuredLogger(Config())  # adds its own handlers, then hands them back
    gunicorn_log.info("Booting worker with pid: %s", 4242)
    lines = [json.loads(line) for line in out.getvalue().strip().splitlines()]
    assert lines[-1]["event"] == "Booting worker with pid: 4242" and lines[-1]["level"] == "info"
