"""`ledgerq batch ...` against the API over real HTTP."""

from __future__ import annotations

import io
import sys
import threading
import time

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from api.cli import main
from api.cli.batch import Spinner
from tests.fixtures.batches import csv_bytes
from tests.fixtures.ledger import balance


@pytest.fixture
def api_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_submit_waits_with_progress_then_status_and_results(api_url, make, worker, tmp_path):
    finance, alice, bob = make.user("finance"), make.user(), make.user()
    a = make.account(alice, balance="10.00")
    b = make.account(bob)
    path = tmp_path / "pay.csv"
    path.write_bytes(csv_bytes(f"{a},{b},4.00,USD,cli-1", f"{a},{b},4.00,USD,cli-2"))
    login = ["--api-url", api_url, "--username", finance.username, "--password", finance.password]
    runner = CliRunner()

    result = runner.invoke(main, ["batch", "submit", str(path), *login])
    assert result.exit_code == 0, result.output
    assert "completed (2 lines: completed 2)" in result.output
    assert balance(b) == "8.00"
    batch_id = result.output.split("batch ")[-1].split(":")[0]

    status = runner.invoke(main, ["batch", "status", batch_id, *login])
    assert status.exit_code == 0 and "completed" in status.output
    out = tmp_path / "results.csv"
    assert runner.invoke(main, ["batch", "results", batch_id, "-o", str(out), *login]).exit_code == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("line,status,transaction_id") and len(lines) == 3

    again = runner.invoke(main, ["batch", "submit", str(path), *login])
    assert again.exit_code == 1
    assert "409 conflict" in again.output


def test_dry_run_prints_the_report_and_records_nothing(api_url, make, tmp_path):
    finance, alice = make.user("finance"), make.user()
    a = make.account(alice)
    path = tmp_path / "check.csv"
    path.write_bytes(csv_bytes(f",{a},1.00,USD,ok", f",{a},1.001,USD,bad"))
    token = finance.headers["Authorization"].split()[1]
    result = CliRunner().invoke(
        main, ["batch", "submit", str(path), "--dry-run", "--api-url", api_url], env={"LEDGERQ_TOKEN": token}
    )
    assert result.exit_code == 2, result.output
    assert "2 lines, 1 accepted, 1 rejected" in result.output
    assert "line 3: invalid_amount" in result.output
    assert balance(a) == "0.00"


def test_without_credentials_it_says_how_to_give_them(api_url, tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(csv_bytes("a,b,1,USD,x"))
    result = CliRunner().invoke(main, ["batch", "submit", str(path), "--api-url", api_url])
    assert result.exit_code == 2
    assert "LEDGERQ_TOKEN" in result.output


def test_submit_prints_the_first_rejected_and_failed_lines(api_url, make, worker, tmp_path):
    finance, alice = make.user("finance"), make.user()
    a, b = make.account(alice, balance="5.00"), make.account(make.user())
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        csv_bytes(f"{a},{b},1.00,USD,ok", f"{a},{b},1.001,USD,bad-amount", f"{a},{b},900.00,USD,too-much")
    )
    login = ["--api-url", api_url, "--username", finance.username, "--password", finance.password]
    result = CliRunner().invoke(main, ["batch", "submit", str(path), *login])
    assert result.exit_code == 2, result.output
    assert "rejected lines (first 1 of 1):" in result.output
    assert "line 3: invalid_amount:" in result.output
    assert "failed lines (first 1 of 1):" in result.output
    assert "line 4: insufficient_funds:" in result.output
    assert "ledgerq batch results" in result.output


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_spinner_spins_on_a_terminal_and_prints_one_line_otherwise(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with Spinner("validating", interval=0.01):
        time.sleep(0.2)
    frames = terminal.getvalue()
    assert frames.count("validating (") >= 3 and {"|", "/", "-"} <= set(frames)
    assert frames.endswith("\r\033[K")

    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    with Spinner("validating", interval=0.01):
        time.sleep(0.05)
    assert log.getvalue() == "validating...\n"
