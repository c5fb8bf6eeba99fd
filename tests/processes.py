"""Real processes for the slow tests: `ledgerq worker`, `ledgerq scheduler`, `ledgerq up`.

Every process is started in its own session with a marker in its environment. Children
inherit the environment (supervisord's programs, gunicorn and Dramatiq workers, even the
embedded PostgreSQL started through pg_ctl), so teardown finds and kills the whole tree by
that marker, even the parts that re-parented themselves or started their own session,
and even when the test failed half-way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

LEDGERQ = str(Path(sys.executable).parent / "ledgerq")
MARKER_VAR = "LEDGERQ_TEST_PROCESS_MARKER"

T = TypeVar("T")


def wait_for(what: str, condition: Callable[[], T], timeout: float, interval: float = 0.1) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Processes:
    """Starts processes and guarantees they (and all their descendants) die afterwards."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.marker = uuid.uuid4().hex
        self.started: list[tuple[subprocess.Popen, Path]] = []

    def env(self, overrides: dict[str, str] | None = None, remove: tuple[str, ...] = ()) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in remove}
        # The test process may run under a terminal; the children's logs go to files.
        env.update({"LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"})
        env.update(overrides or {})
        env[MARKER_VAR] = self.marker
        return env

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        remove: tuple[str, ...] = (),
        cwd: Path | None = None,
    ) -> subprocess.Popen:
        log_path = self.log_dir / f"{name}-{len(self.started)}.log"
        with log_path.open("ab") as log_file:
            proc = subprocess.Popen(
                argv,
                env=self.env(env, remove),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=cwd or self.log_dir,
            )
        proc.log_path = log_path  # type: ignore[attr-defined]
        self.started.append((proc, log_path))
        return proc

    def survivors(self) -> list[psutil.Process]:
        """Every live process carrying this run's marker, or working in its directory
        (redis-server and PostgreSQL overwrite their environment with their process
        title, but they chdir into their data directory). Zombies do not count."""
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if proc.environ().get(MARKER_VAR) == self.marker or self._inside(proc.cwd()):
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def _inside(self, path: str) -> bool:
        return path == str(self.log_dir) or path.startswith(f"{self.log_dir}{os.sep}")

    def kill_all(self) -> None:
        for proc, _ in self.started:
            kill_group(proc.pid, signal.SIGKILL)
        for _ in range(3):  # a supervisor may have restarted something in between
            leftovers = self.survivors()
            if not leftovers:
                break
            for proc in leftovers:
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(leftovers, timeout=5)
        for proc, _ in self.started:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def logs_text(self, name: str) -> str:
        """Everything the processes called `name` wrote."""
        return "".join(
            path.read_text(errors="replace") for _, path in self.started if path.name.startswith(f"{name}-")
        )

    def logs(self) -> str:
        """The tail of every captured log, for assertion messages."""
        return "\n".join(f"--- {path.name} ---\n{tail(path)}" for _, path in self.started)


def kill_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


# --- processes of the stack -------------------------------------------------------------


def dramatiq_workers(root: psutil.Process) -> tuple[psutil.Process | None, list[psutil.Process]]:
    """The Dramatiq parent under `root` (or `root` itself) and its worker children.

    Fork processes (the Prometheus exposition server) have the same command line as the
    workers; they are told apart by their listening socket."""
    candidates = [root, *safe(lambda: root.children(recursive=True), [])]
    for proc in candidates:
        cmdline = safe(proc.cmdline, [])
        parent = safe(proc.parent, None)
        parent_cmdline = safe(parent.cmdline, []) if parent else []
        if "dramatiq" in cmdline and "dramatiq" not in parent_cmdline:
            children = [c for c in safe(proc.children, []) if "dramatiq" in safe(c.cmdline, [])]
            return proc, [c for c in children if not listens(c)]
    return None, []


def listens(proc: psutil.Process) -> bool:
    connections = safe(lambda: proc.net_connections(kind="inet"), [])
    return any(c.status == psutil.CONN_LISTEN for c in connections)


def safe(call: Callable[[], T], default: T) -> T:
    try:
        return call()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return default


# --- HTTP without a client library ---------------------------------------------------


class Http:
    """A tiny JSON client on urllib for a server started as a real process."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, timeout=35
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _json(error.read())

    def get(self, path: str, headers=None, timeout=35) -> tuple[int, Any]:
        return self.request("GET", path, headers=headers, timeout=timeout)

    def post(self, path: str, body: Any = None, headers=None) -> tuple[int, Any]:
        return self.request("POST", path, body if body is not None else {}, headers)

    def status(self, path: str) -> int | None:
        """The status code, or None while nothing answers on the port."""
        try:
            return self.get(path, timeout=5)[0]
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return None

    def wait_ready(self, timeout: float, proc: subprocess.Popen | None = None) -> None:
        def ready() -> bool:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"process exited with {proc.returncode} before it was ready")
            return self.status("/readyz") == 200

        wait_for(f"{self.base_url}/readyz to answer 200", ready, timeout, interval=0.25)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")
