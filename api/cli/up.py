"""`ledgerq up`: the whole stack on one machine, supervised.

1. PostgreSQL and Redis: DATABASE_URL / REDIS_URL when set, otherwise embedded servers
   whose data lives under ./.ledgerq/ and survives restarts.
2. Migrations (the Procfile's `release`).
3. Every other Procfile process under supervisord, which restarts a crashed process with
   backoff. This matters for workers: when one Dramatiq worker process dies, Dramatiq's
   parent stops the others and exits; a plain Procfile runner (honcho) would then stop
   the whole stack. supervisord restarts the worker group and the API and scheduler keep
   serving.
Ctrl-C / SIGTERM stops supervisord (which stops its children), then the databases.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from api.cli import main
from db.logs import get_logger

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


def supervisord_config(state_dir: Path, processes: dict[str, str], workdir: Path) -> str:
    bin_dir = Path(sys.executable).parent
    sections = [
        "[supervisord]",
        "nodaemon=true",
        f"logfile={state_dir / 'supervisord.log'}",
        f"pidfile={state_dir / 'supervisord.pid'}",
        f"childlogdir={state_dir / 'logs'}",
        "",
        "[unix_http_server]",
        f"file={state_dir / 'supervisor.sock'}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{state_dir / 'supervisor.sock'}",
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
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
        ]
    return "\n".join(sections) + "\n"


@main.command()
@click.option("--state-dir", type=click.Path(path_type=Path), default=Path(".ledgerq"), show_default=True)
def up(state_dir: Path) -> None:
    """Run the whole stack here: API on 127.0.0.1:$PORT (8000), workers, scheduler."""
    from db.config import get_settings
    from db.embedded import EmbeddedPostgres, EmbeddedRedis
    from db.migrate import upgrade

    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "logs").mkdir(exist_ok=True)
    stoppers = []

    def stop_databases() -> None:
        for stop in reversed(stoppers):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001
                log.warning("up.stop_failed", error=str(exc))

    try:
        if not os.environ.get("DATABASE_URL"):
            postgres = EmbeddedPostgres(state_dir / "postgres")
            stoppers.append(postgres.stop)
            os.environ["DATABASE_URL"] = postgres.url
            click.echo(f"embedded PostgreSQL: {state_dir / 'postgres'}")
        if not os.environ.get("REDIS_URL"):
            redis = EmbeddedRedis(state_dir / "redis")
            stoppers.append(redis.stop)
            os.environ["REDIS_URL"] = redis.url
            click.echo(f"embedded Redis (AOF): {state_dir / 'redis'} on {redis.url}")
        # Other `ledgerq` commands run from this directory read the URLs from here.
        env_file = state_dir / "env"
        env_file.write_text(
            f"DATABASE_URL={os.environ['DATABASE_URL']}\nREDIS_URL={os.environ['REDIS_URL']}\n"
        )
        stoppers.insert(0, lambda: env_file.unlink(missing_ok=True))
        get_settings.cache_clear()
        upgrade(get_settings().database_url)
        click.echo("migrations applied")

        processes = {name: cmd for name, cmd in read_procfile(PROCFILE).items() if name != "release"}
        config_path = state_dir / "supervisord.conf"
        config_path.write_text(supervisord_config(state_dir, processes, PROCFILE.parent))
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(config_path)],
            start_new_session=True,
        )
        port = get_settings().port
        click.echo(f"ledgerq is starting: API on http://127.0.0.1:{port} (Ctrl-C stops everything)")

        def forward(signum, _frame):
            if supervisor.poll() is None:
                supervisor.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        while supervisor.poll() is None:
            time.sleep(0.2)
        click.echo("all processes stopped")
    finally:
        stop_databases()
