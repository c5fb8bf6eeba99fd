"""mypy over the application packages, as part of the test command: a type error fails
the suite (and so CI) like any other broken test. Configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_is_clean_on_the_application_packages():
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "api", "workers", "scheduler", "db"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
