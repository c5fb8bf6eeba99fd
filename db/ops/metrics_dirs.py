"""Prometheus multiprocess directories for process groups (the gunicorn web tier, a
Dramatiq worker group): one per group, named by the group's parent pid.

Imports nothing from prometheus_client: the directory must exist, and
PROMETHEUS_MULTIPROC_DIR be set, before prometheus_client is first imported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psutil


def fresh_multiprocess_dir(prefix: str) -> Path:
    """An empty directory for this process group, after removing those left by groups
    that are gone, so restarts do not pile them up in the temp dir."""
    root = Path(tempfile.gettempdir())
    for path in root.glob(f"{prefix}*"):
        pid = path.name.removeprefix(prefix)
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
    directory = root / f"{prefix}{os.getpid()}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory
