"""`ledgerq bench [scenario ...]`: throughput and latency of the whole stack, each figure
with its ratio to a baseline measured on the same PostgreSQL server in the same run.

    ledgerq bench                      # every scenario (about 25 minutes; soak is 10 of them)
    ledgerq bench accept apply e2e     # some
    ledgerq bench --quick              # a smoke run of everything: plumbing, not figures

Prints a table and writes a JSON file (machine, date, git commit, figures, ratios). See
the README's Performance section for what each scenario does and how to read it.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from api.cli import main

NAMES = ("accept", "floor", "apply", "e2e", "hot", "poll", "longpoll", "batch", "soak", "analytics")


def _option(name: str, kind: type, help_text: str) -> Any:
    return click.option(f"--{name.replace('_', '-')}", name, type=kind, default=None, help=help_text)


# Every knob of scenarios.Options, as an option that overrides the default (or --quick's).
_KNOBS = [
    ("clients", int, "concurrent connections of the main load [16]"),
    ("load_processes", int, "load generator processes [2]"),
    ("duration", float, "seconds of closed-loop load in e2e and hot [60]"),
    ("accept_seconds", float, "seconds of load in accept [30]"),
    ("poll_seconds", float, "seconds of load per read in poll [20]"),
    ("probe_seconds", float, "seconds of the /healthz probe of the load generator [5]"),
    ("users", int, "customers sending transfers [16]"),
    ("accounts_per_user", int, "funded accounts per customer [4]"),
    ("backlog", int, "transfers the workers drain in apply [20000]"),
    ("poll_transactions", int, "transfers made to be read in poll [2000]"),
    ("longpoll_seconds", float, "seconds of each longpoll phase [20]"),
    ("longpoll_rate", float, "the other clients' requests/s in longpoll [40]"),
    ("waiters", int, "concurrent ?wait=30 long-polls [200]"),
    ("waiters_per_user", int, "long-polls per waiting user [10]"),
    ("batch_lines", int, "lines of the batch file [100000]"),
    ("batch_payers", int, "funded source accounts of the batch [20]"),
    ("batch_payees", int, "destination accounts of the batch [5000]"),
    ("batch_bad_every", int, "make every Nth batch line invalid, 0: none [0]"),
    ("soak_seconds", float, "length of the soak [600]"),
    ("soak_fraction", float, "soak load as a fraction of the e2e capacity [0.7]"),
    ("soak_interval", float, "seconds between soak samples [10]"),
    ("drain_timeout", float, "longest wait for a backlog to empty [900]"),
    ("analytics_transactions", int, "transactions loaded for the analytics reads [1000000]"),
    ("analytics_calls", int, "calls timed per kind of analytics read [200]"),
]


def _knobs(command: Any) -> Any:
    for name, kind, help_text in reversed(_KNOBS):
        command = _option(name, kind, help_text)(command)
    return command


@main.command()
@click.argument("scenarios", nargs=-1, type=click.Choice([*NAMES, "all"]))
@click.option("--quick", is_flag=True, help="tiny sizes and 1-3 s loads: a smoke run of the plumbing")
@click.option(
    "--server",
    envvar="DATABASE_URL",
    help="PostgreSQL to create the bench databases on [DATABASE_URL's server, else "
    "127.0.0.1:5432, else embedded]",
)
@click.option("--redis", envvar="REDIS_URL", help="Redis [REDIS_URL, else 127.0.0.1:6379, else embedded]")
@click.option(
    "--pgbench", "pgbench_path", help="the pgbench binary [found on PATH, in PostgreSQL's dirs, in pgserver]"
)
@click.option("--pgbench-seconds", type=float, default=None, help="length of each pgbench baseline [10]")
@click.option("--pgbench-scale", type=int, default=None, help="pgbench -i scale factor [10]")
@click.option("--batch-mode", type=click.Choice(["independent", "atomic"]), default="independent")
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=None,
    help="where to write the results [bench-results/<UTC time>.json]",
)
@click.option("--log-level", default="INFO", show_default=True, help="LOG_LEVEL of the stack's processes")
@click.option("--keep", is_flag=True, help="keep the databases and the temp directory (logs)")
@_knobs
def bench(
    scenarios: tuple[str, ...],
    quick: bool,
    server: str | None,
    redis: str | None,
    pgbench_path: str | None,
    pgbench_seconds: float | None,
    pgbench_scale: int | None,
    batch_mode: str,
    json_path: Path | None,
    log_level: str,
    keep: bool,
    **knobs: Any,
) -> None:
    """Benchmark scenarios against their own stack; every figure with its ratio to a
    baseline measured on the same server in the same run.

    Scenarios (default: all, in this order): accept (API alone), floor (the fixed
    stack's least cost for the same requests: what accept and poll can reach at best),
    apply (workers alone
    draining a backlog), e2e (sustained load), hot (every transfer into one account),
    poll (reads), longpoll (other clients beside 200 waiters), batch (a 100k-line
    file), soak (10 min at 70 % of e2e capacity), analytics (the /analytics reads on
    1M transactions).

    The stack is the Procfile's own processes; set WEB_WORKERS, WEB_THREADS,
    WORKER_PROCESSES, WORKER_THREADS, LEDGERQ_DB_POOL_SIZE, ... in the environment to
    try other settings.
    """
    from api.cli.bench import report
    from api.cli.bench.baseline import INSTALL_HINT, BaselineError, Baselines, Pgbench, find_pgbench
    from api.cli.bench.scenarios import SCENARIOS, Bench, Options
    from api.cli.bench.stack import ROOT, Run, find_servers, new_workdir

    chosen = [n for n in NAMES if n in scenarios or "all" in scenarios or not scenarios]
    binary = find_pgbench(pgbench_path)
    if binary is None:
        raise click.ClickException(INSTALL_HINT)
    values = {**(Options.quick() if quick else {}), **{k: v for k, v in knobs.items() if v is not None}}
    options = Options(**values, batch_mode=batch_mode)
    seconds = pgbench_seconds if pgbench_seconds is not None else (1.0 if quick else 10.0)
    scale = pgbench_scale if pgbench_scale is not None else (1 if quick else 10)
    json_path = json_path or Path("bench-results") / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"

    # SIGTERM unwinds like Ctrl-C, so every stack and database is cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # A development run with a stack of its own, like `ledgerq up`: this process and the
    # stack share one random secret, never a published one, unless told otherwise.
    os.environ.setdefault("LEDGERQ_ENV", "development")
    os.environ.setdefault("JWT_SECRET", secrets.token_urlsafe(48))
    _quiet_logging()
    workdir = new_workdir()
    servers = find_servers(_server_of(server), redis, workdir)
    run = Run(servers, workdir, log_level=log_level, keep=keep)
    pgbench = Pgbench(binary)
    scratch = run.create_database("pgbench")
    baselines = Baselines(pgbench, scratch, seconds=seconds, scale=scale)
    stack_env = {"LOG_LEVEL": log_level}
    ctx = Bench(run, baselines, options, stack_env)
    document: dict[str, Any] = {
        "date": report.now_iso(),
        "git": report.git_info(ROOT),
        "machine": report.machine_info(),
        "servers": {
            **servers.described,
            "postgres_version": run.server_version(),
            "pgbench": pgbench.version(),
        },
        "options": {
            **dataclasses.asdict(options),
            "quick": quick,
            "pgbench_seconds": seconds,
            "pgbench_scale": scale,
        },
        "stack_settings": _stack_settings(),
        "scenarios": {},
    }
    click.echo(f"ledgerq bench: {', '.join(chosen)} (logs in {workdir}; results -> {json_path})", err=True)
    failed: list[str] = []
    outcomes = []
    try:
        for name in chosen:
            click.echo(f"== {name}", err=True)
            began = time.monotonic()
            try:
                outcome = SCENARIOS[name](ctx)
            except (BaselineError, RuntimeError, OSError) as exc:
                failed.append(name)
                click.echo(f"   {name} FAILED: {exc}", err=True)
                document["scenarios"][name] = {"error": str(exc)}
                report.write_json(json_path, document)
                continue
            outcome.details["seconds"] = round(time.monotonic() - began, 1)
            ctx.done[name] = outcome
            outcomes.append(outcome)
            document["scenarios"][name] = outcome.as_dict()
            document["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
            report.write_json(json_path, document)  # after each scenario: a cut-off run keeps its figures
            click.echo(report.table([outcome]), err=True)
    finally:
        if not keep:
            run.drop_database(scratch)
        servers.stop()
        if not keep and not failed:
            shutil.rmtree(workdir, ignore_errors=True)
    click.echo(report.table(outcomes))
    click.echo(f"\nresults: {json_path}")
    if failed:
        click.echo(f"failed: {', '.join(failed)} (logs kept in {workdir})", err=True)
        sys.exit(1)


def _server_of(url: str | None) -> str | None:
    """The server of a database URL, as a URL of its `postgres` database: the bench makes
    databases of its own there and never touches the one named."""
    if not url:
        return None
    from sqlalchemy.engine import make_url

    from api.cli.bench.baseline import libpq_url

    return make_url(libpq_url(url)).set(database="postgres").render_as_string(hide_password=False)


def _quiet_logging() -> None:
    """The bench process logs warnings only; the stack's processes log at --log-level."""
    os.environ["LOG_LEVEL"] = "WARNING"
    from db.core.config import get_settings
    from db.core.logs import configure_logging

    get_settings.cache_clear()
    configure_logging(get_settings())


def _stack_settings() -> dict[str, Any]:
    from db.core.config import get_settings

    s = get_settings()
    return {
        "web_workers": s.web_workers,
        "web_threads": s.web_threads,
        "worker_processes": s.worker_processes,
        "worker_threads": s.worker_threads,
        "worker_prefetch": s.worker_prefetch,
        "db_pool_size": s.db_pool_size,
        "batch_chunk_size": s.batch_chunk_size,
    }
