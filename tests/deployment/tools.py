"""Command-line checkers the deployment tests run (promtool, systemd-analyze).

A missing tool is installed from Debian's packages when this runs as root with apt-get
(CI's machine: a fresh clone, apt reachable); otherwise the test fails and says what
to install. It never skips: a check that did not run must not look like a pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENT = REPO / "deployment"

_APT = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "-y", "-qq", "--no-install-recommends"]


def require(binary: str, debian_package: str) -> str:
    found = shutil.which(binary)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = subprocess.run([*_APT, "install", debian_package], env=env, capture_output=True, text=True)
        if install.returncode != 0:  # a fresh machine may have no package lists yet
            subprocess.run(["apt-get", "-qq", "update"], env=env, capture_output=True, text=True)
            install = subprocess.run(
                [*_APT, "install", debian_package], env=env, capture_output=True, text=True
            )
        found = shutil.which(binary)
        if found:
            return found
        pytest.fail(f"apt-get install {debian_package} did not provide {binary}:\n{install.stderr[-2000:]}")
    pytest.fail(
        f"{binary} is needed for this check: install Debian's {debian_package} (apt-get install {debian_package})"
    )


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
