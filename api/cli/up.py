"""`ledgerq up`: the whole stack on one machine, supervised.

1. PostgreSQL and Redis: DATABASE_URL / REDIS_URL when set, otherwise embedded servers
   whose data lives under ./.ledgerq/ and survives restarts.
2. Migrations (the Procfile's `release`).
3. Every other Procfile process under supervisord, which restarts a crashed process with
   backoff. This matters for workers: when one Dramatiq worker process dies, Dramatiq's
   parent stops the others and exits; a plain Procfile runner (honcho) would then stop
   the whole stack. supervisord restarts the worker group and the API and scheduler keep
   serving.
Ctrl-C / SIGTERM, at any point, stops supervisord (which stops every program at once,
each draining gracefully), then the embedded servers, and exits 0. Exit 1 when
supervisord stops without being asked. Killed outright (SIGKILL), supervisord and the
embedded Redis get SIGTERM from the kernel (Linux), so no orphaned stack lives on; the
embedded PostgreSQL is adopted by the next run.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import click

from api.cli import main
from db.core.logs import get_logger

log = get_logger(__name__)

PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


def read_procfile(path: Path) -> dict[str, str]:
    processes: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            name, command = line.split(":", 1)
            processes[name.strip()] = command.strip()
    return processes


def supervisor_socket(state_dir: Path) -> Path:
    """supervisorctl's socket: in the state dir, unless that path is too long for a Unix
    socket (about 100 bytes), which made supervisord refuse to start at all."""
    path = state_dir / "supervisor.sock"
    if len(os.fsencode(path)) < 100:
        return path
    digest = hashlib.sha256(os.fsencode(state_dir)).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"ledgerq-supervisor-{digest}.sock"


def supervisord_config(state_dir: Path, processes: dict[str, str], workdir: Path) -> str:
    bin_dir = Path(sys.executable).parent
    socket_path = supervisor_socket(state_dir)
    sections = [
        "[supervisord]",
        "nodaemon=true",
        # supervisord's own lines (spawned, exited, gave up) go to its log file only: the
        # console is one stream of the programs' structured lines. `ledgerq up` prints
        # the file's path at start.
        "silent=true",
        f"logfile={state_dir / 'supervisord.log'}",
        f"pidfile={state_dir / 'supervisord.pid'}",
        f"childlogdir={state_dir / 'logs'}",
        "",
        "[unix_http_server]",
        f"file={socket_path}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{socket_path}",
    ]
    for name, command in processes.items():
        # A shell so Procfile lines may use $VARS; `exec` so signals reach the process.
        shell_command = f"/bin/sh -c {shlex.quote('exec ' + command)}"
        sections += [
            "",
            f"[program:{name}]",
            f"command={shell_command.replace('%', '%%')}",
            f"directory={workdir}",
            f'environment=PATH="{bin_dir}:%(ENV_PATH)s"',
            "autostart=true",
            "autorestart=true",
            # Crashing within startsecs counts as a failed start; supervisord backs off
            # 1 s, 2 s, 3 s, ... between those, up to startretries, then gives up (FATAL).
            "startsecs=3",
            "startretries=20",
            "stopsignal=TERM",
            "stopwaitsecs=30",
            # SIGTERM to the program only: gunicorn and Dramatiq forward it to their own
            # children and wait for them. Sent to the whole group, each Dramatiq worker
            # got it twice (directly, then from its parent), and a second SIGTERM means
            # "exit now": in-flight messages were abandoned on every clean stop.
            "stopasgroup=false",
            # Whatever is still alive after stopwaitsecs is SIGKILLed, children included.
            "killasgroup=true",
            "redirect_stderr=true",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
        ]
    # One group, so that a stop signals every program at once and they drain in
    # parallel; as separate groups supervisord stopped them one after another (up to
    # stopwaitsecs each).
    sections += ["", "[group:ledgerq]", f"programs={','.join(processes)}"]
    return "\n".join(sections) + "\n"


@main.command()
@click.option("--state-dir", type=click.Path(path_type=Path), default=Path(".ledgerq"), show_default=True)
def up(state_dir: Path) -> None:
    """Run the whole stack here: API on 127.0.0.1:$PORT (8000), workers, scheduler."""
    from db.core.config import development_secret, get_settings
    from db.core.logs import configure_logging
    from db.migrate import upgrade
    from db.ops.embedded import EmbeddedPostgres, EmbeddedRedis, die_with_parent

    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "logs").mkdir(exist_ok=True)
    stoppers: list[Callable[[], object]] = []
    supervisor: subprocess.Popen | None = None
    stop_requested = False

    def on_signal(signum, _frame):
        nonlocal stop_requested
        stop_requested = True
        if supervisor is not None and supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)

    def stop_if_requested() -> None:
        # Checked between start-up steps: unwinding from inside one (say, between
        # starting a server and recording how to stop it) could leave it running.
        if stop_requested:
            click.echo("stopped while starting")
            sys.exit(0)

    # From the start, not only once supervisord runs: the default action would kill us
    # without running `finally`, leaving the embedded servers behind.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def stop_databases() -> None:
        for stop in reversed(stoppers):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001
                log.warning("up.stop_failed", error=str(exc))

    # A development stack: unless told otherwise, with this install's own random JWT
    # secret (kept beside its data), never a published one. Children inherit both.
    os.environ.setdefault("LEDGERQ_ENV", "development")
    if not os.environ.get("JWT_SECRET") and not os.environ.get("JWT_SECRET_FILE"):
        os.environ["JWT_SECRET"] = development_secret(state_dir / "jwt-secret")
    # A development stack: webhooks may reach receivers on this machine or the LAN
    # (plain http, private addresses); the SSRF guard stays on everywhere else.
    os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE_HOSTS", "true")
    try:
        if not os.environ.get("DATABASE_URL"):
            postgres = EmbeddedPostgres(state_dir / "postgres")
            stoppers.append(postgres.stop)
            os.environ["DATABASE_URL"] = postgres.url
            click.echo(f"embedded PostgreSQL: {state_dir / 'postgres'}")
            stop_if_requested()
        if not os.environ.get("REDIS_URL"):
            redis = EmbeddedRedis(state_dir / "redis")
            stoppers.append(redis.stop)
            os.environ["REDIS_URL"] = redis.url
            click.echo(f"embedded Redis (AOF): {state_dir / 'redis'} on {redis.url}")
            stop_if_requested()
        # Other `ledgerq` commands run from this directory read the URLs from here.
        env_file = state_dir / "env"
        env_file.write_text(
            f"DATABASE_URL={os.environ['DATABASE_URL']}\nREDIS_URL={os.environ['REDIS_URL']}\n"
        )
        stoppers.insert(0, lambda: env_file.unlink(missing_ok=True))
        get_settings.cache_clear()
        configure_logging(get_settings())  # the group could not, before this environment
        if sys.stdout.isatty() and "LOG_FORMAT" not in os.environ and not get_settings().is_production:
            # The programs write into supervisord's pipe, not a terminal, so on their own
            # they would choose JSON; the person at this terminal reads console lines.
            os.environ["LOG_FORMAT"] = "console"
        upgrade(get_settings().database_url)
        click.echo("migrations applied")
        stop_if_requested()

        processes = {name: cmd for name, cmd in read_procfile(PROCFILE).items() if name != "release"}
        config_path = state_dir / "supervisord.conf"
        config_path.write_text(supervisord_config(state_dir, processes, PROCFILE.parent))
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(config_path)],
            start_new_session=True,
            # Killed outright (SIGKILL, OOM), we cannot stop supervisord: it gets SIGTERM
            # from the kernel instead and stops the stack rather than orphaning it.
            preexec_fn=die_with_parent(),
        )
        if stop_requested:  # the signal came while supervisord was being started
            supervisor.send_signal(signal.SIGTERM)
        port = get_settings().port
        click.echo(f"ledgerq is starting: API on http://127.0.0.1:{port} (Ctrl-C stops everything)")
        click.echo(f"process restarts and exits: {state_dir / 'supervisord.log'}")
        while supervisor.poll() is None:
            time.sleep(0.2)
        if not stop_requested:
            # Nobody asked it to stop: supervisord failed (see its log), so must we.
            click.echo(
                f"supervisord exited with code {supervisor.returncode}; see {state_dir / 'supervisord.log'}",
                err=True,
            )
            sys.exit(1)
        click.echo("all processes stopped")
    finally:
        stop_databases()
