"""The embedded PostgreSQL of `ledgerq up` must stay stoppable after its owner crashed."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from db.ops.embedded import EmbeddedPostgres
from tests.fixtures.processes import wait_for

pytestmark = pytest.mark.slow


def postmasters(data_dir) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline and cmdline[0].endswith("/postgres") and str(data_dir) in cmdline:
            found.append(proc)
    return found


def test_a_run_after_a_crashed_one_still_stops_the_server(tmp_path):
    data_dir = tmp_path / "postgres"
    # A first `ledgerq up` starts the server, then dies without cleaning up (SIGKILL).
    crashed = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import os, signal
                from pathlib import Path
                from db.ops.embedded import EmbeddedPostgres
                EmbeddedPostgres(Path({str(data_dir)!r}))
                os.kill(os.getpid(), signal.SIGKILL)
                """
            ),
        ],
        capture_output=True,
        timeout=60,
    )
    try:
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        assert postmasters(data_dir), "the server should have outlived its crashed owner"

        # The next run reuses the server and, when it stops, really stops it.
        EmbeddedPostgres(data_dir).stop()
        wait_for("the embedded PostgreSQL to stop", lambda: not postmasters(data_dir), 15)
    finally:
        for proc in postmasters(data_dir):
            proc.kill()
